"""Checkpoints: the whole state of a fit after an epoch, so that it continues exactly there.

A checkpoint lives in ``checkpoint/`` inside the run's output folder:

* ``state-<epoch>.safetensors``: every tensor the training loop carries from one epoch to
  the next: the parameters, the parameters of the last epoch with a finite loss (kept for
  divergence), the optimizer's buffers (SGD momentum, Adam moments, the L-BFGS memory) and
  the states of the random generators (the mini-batch order, PyTorch's and NumPy's global ones);
* ``history.jsonl``: one JSON line per recorded epoch, appended at each checkpoint, so a
  checkpoint costs the epochs since the previous one, not the whole history;
* ``state.json``, written last: the epoch, the settings and the SHA-256 of the data a
  resumed run must match, the optimizer's and the schedule's other state, the stopping
  rule's, and the SHA-256 of the tensors file and of the history log's first ``bytes`` bytes.

``state.json`` is the commit: the tensors file is written (atomically) under a new name
first, then ``state.json`` (atomically) names it, then older tensors files are deleted. The
log only grows; ``state.json`` says how many of its bytes count, so a torn append past them
is ignored on resume and overwritten by the next checkpoint. A process killed at any point
leaves the previous checkpoint usable. Nothing is unpickled: safetensors and JSON only.

Resuming puts every piece back, so the epochs after it run on the same bits as in a run
never interrupted: same parameters, history and output files, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from . import __version__
from .errors import CheckpointError, ConfigError, Interrupted, OutputError
from .history import EpochRecord, History
from .checkpoint_state import FORMAT_VERSION, decode, encode, seal, unseal
from .outputs import (CHECKPOINT_DIR, CHECKPOINT_FORMAT, CHECKPOINT_STATE, atomic_write_bytes, atomic_write_text,
                      parse_json, read_json_object)
from .persistence import _looks_like_pickle, _one_line, sorted_metadata

HISTORY_LOG = "history.jsonl"
SIGNALS = (signal.SIGINT, signal.SIGTERM)  # stop at the end of the epoch, with a checkpoint
START_OVER = "start over without {resume=True} (with {force=True})"


def fit_settings(config, **extra) -> dict:
    """What a resumed fit must share with the interrupted one: ``config``'s fields, ``extra``,
    the number of PyTorch threads (sums over many rows depend on it) and the versions."""
    settings = {**config.to_dict(), **extra, "threads": torch.get_num_threads(),
                "torchlinreg": __version__, "torch": torch.__version__}
    return json.loads(json.dumps(settings))  # as it reads back from state.json (tuples become lists)


def data_sha256(*tensors: torch.Tensor | None) -> str:
    """SHA-256 of the tensors' dtypes, shapes and bytes (``None`` counts as absent)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none;")
            continue
        a = t.detach().cpu().contiguous()
        h.update(f"{a.dtype}{tuple(a.shape)};".encode())
        h.update(a.numpy().reshape(-1).view(np.uint8))
    return h.hexdigest()


STREAMED_DATA = "SHA-256 of the R factor of its first pass, its row count, weights, columns and files"


def streamed_data_sha256(acc, source) -> str:
    """The fingerprint a resumed streamed fit must match: from its first pass, not from the rows.

    Hashing the rows themselves, as :func:`data_sha256` does for data in memory, would cost a
    pass over files that may be far larger than memory. The first pass (the R factor of
    ``[X, 1, y]``, :func:`torchlinreg.exact.accumulate`) runs on every fit, resumed or not,
    so the fingerprint comes from it at no extra cost: the bytes of the float64 R factor
    (bit-exact for the same rows read in the same chunks, which ``chunk_rows`` among the
    settings ensures; any changed value, row or order moves its last bits), the row count,
    the sum of the weights, the format, the columns read, and each file's name and size.
    ``acc`` is that pass's :class:`~torchlinreg.solve.QRAccumulator`, ``source`` the
    :class:`~torchlinreg.filesource.FileSource` it read.
    """
    h = hashlib.sha256()
    R = np.ascontiguousarray(acc.R, dtype=np.float64)
    h.update(f"R{R.shape};".encode())
    h.update(R.reshape(-1).view(np.uint8))
    described = {"n_samples": int(acc.n_samples), "sum_weights": float(acc.sum_weights).hex(),
                 "format": source.format, "features": list(source.feature_names),
                 "targets": list(source.target_names), "weights": source.weight_name,
                 "files": [[Path(p).name, os.stat(p).st_size] for p in source.paths]}
    h.update(json.dumps(described, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def check_folder(out_dir: str | os.PathLike, *, every: int | None = None, resume: bool = False,
                 force: bool = False) -> bool:
    """The refusals of :class:`Checkpointer` that need neither the settings nor the data, changing nothing.

    A bad ``every``; ``resume`` without a checkpoint; a checkpoint there without ``resume``
    or ``force``. Returns whether ``out_dir`` holds a checkpoint. A fit that reads its data
    before it can make the Checkpointer (a streamed fit: the data's fingerprint comes from
    its first pass) calls this first, so that these refusals come before that pass.
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ConfigError(f"{{checkpoint_every}} must be a positive integer, got {every!r}; pass e.g. {{checkpoint_every=100}}")
    folder = Path(out_dir) / CHECKPOINT_DIR
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{str(folder)!r} is a file, not torchlinreg's checkpoint folder; "
                          "move it or choose another {out_dir}")
    found = (folder / CHECKPOINT_STATE).exists()
    if resume and not found:
        raise ConfigError(f"no checkpoint to resume in {str(folder.parent)!r}; run without {{resume=True}} "
                          "(a checkpoint is written by {checkpoint_every=N}, or when a fit is interrupted)")
    if not resume and found and not force:
        state = read_json_object(folder / CHECKPOINT_STATE)
        epochs = state.get("settings", {}).get("epochs") if isinstance(state.get("settings"), dict) else None
        where = f" (epoch {state['epoch']} of {epochs})" if "epoch" in state else ""
        raise OutputError(f"{str(folder.parent)!r} holds the checkpoint of an interrupted run{where}; "
                          "pass {resume=True} to continue it, or {force=True} to start over")
    return found


class Checkpointer:
    """Saves a fit's training state into ``<out_dir>/checkpoint``; with ``resume``, puts it back.

    The training loops call :meth:`bind` once before epoch 1 (it restores the state when
    resuming) and :meth:`epoch_end` after each epoch's step. Inside :meth:`on_signals`,
    SIGINT or SIGTERM ends training at the end of the current epoch with a checkpoint and
    :class:`~torchlinreg.errors.Interrupted`; a second signal stops at once.

    Parameters
    ----------
    out_dir : path
        The run's output folder.
    settings : dict
        What must not change before a resume (see :func:`fit_settings`).
    data_hash : callable
        Returns the SHA-256 of the data trained on (see :func:`data_sha256`); called once,
        when the first checkpoint is written or one is read.
    every : int or None
        Write a checkpoint after every ``every``-th epoch; None: only when stopped by a
        signal (when resuming, None keeps the checkpoint's own).
    resume : bool
        Continue from the checkpoint in ``out_dir``; refused when there is none, when it is
        damaged, or when it was made with other settings or data.
    force : bool
        Without ``resume``, start over when ``out_dir`` holds a checkpoint (else refused, so
        that an interrupted run is not lost by accident).
    data_what : str
        What ``data_hash`` is a hash of, for the message refusing other data.
    """

    def __init__(self, out_dir: str | os.PathLike, settings: dict, data_hash: Callable[[], str], *,
                 every: int | None = None, resume: bool = False, force: bool = False,
                 data_what: str = "SHA-256 of the training rows"):
        check_folder(out_dir, every=every, resume=resume, force=force)
        self.folder = Path(out_dir) / CHECKPOINT_DIR
        self.every, self.settings = every, settings
        self._data_hash, self._data_sha, self._data_what = data_hash, None, data_what
        self.stop_signal: int | None = None  # set by the first SIGINT/SIGTERM inside on_signals()
        self.saved_epoch: int | None = None  # the epoch the checkpoint on disk holds
        self._log_bytes, self._log_records, self._log_hash = 0, 0, hashlib.sha256()
        self._restored, self._committed_file = None, None  # the tensors file state.json names
        if resume:
            self._restored = self._load()
            if every is None:
                self.every = self._restored[0].get("every")
        else:  # no checkpoint there, or force: start over (check_folder refused the rest)
            self.remove()

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.folder)!r}, every={self.every}, saved_epoch={self.saved_epoch})"

    # --- the hooks the training loops call -------------------------------------------------------

    def bind(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, plateau, history: History,
             last_state: dict[str, torch.Tensor], *,
             generator: torch.Generator | None = None) -> tuple[int, float | None]:
        """Remember the loop's state objects; when resuming, load the checkpoint into them.

        ``plateau`` is the stopping rule (``best``, ``stale``); ``last_state`` the parameters
        of the last epoch with a finite loss (filled in place); ``generator`` the mini-batch
        order, if any. Returns the first epoch to run and the loss of epoch 1 (None when
        starting from scratch).
        """
        self._model, self._optimizer, self._scheduler = model, optimizer, scheduler
        self._plateau, self._history, self._generator = plateau, history, generator
        if self._restored is None:
            return 1, None
        state, tensors, records = self._restored
        self._restored = None
        with torch.no_grad():
            for name, p in model.named_parameters():
                for prefix, target in (("model", p), ("last", last_state[name])):
                    saved = tensors.get(f"{prefix}.{name}")
                    if saved is None or saved.shape != target.shape:
                        raise self._damaged(f"it holds no {prefix} parameter {name!r} of shape {tuple(target.shape)}")
                    target.copy_(saved)
        try:  # the SHA-256 vouches for the files; this catches a state that does not fit these objects
            optimizer.load_state_dict(decode(state["optimizer"], tensors))
            if scheduler is not None:
                scheduler.load_state_dict(decode(state["scheduler"], tensors))
            if generator is not None:
                generator.set_state(tensors["rng.shuffle"])
            torch.set_rng_state(tensors["rng.torch"])
            kind, pos, has_gauss, cached = state["numpy_rng"]
            np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
            plateau.best, plateau.stale = state["plateau"]["best"], state["plateau"]["stale"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise self._damaged(f"its optimizer, schedule or generator state does not fit ({_one_line(exc)})") from None
        history.records[:] = records
        self.saved_epoch = state["epoch"]
        return state["epoch"] + 1, state["first_loss"]

    def epoch_end(self, epoch: int, last_state: dict[str, torch.Tensor], first_loss: float) -> None:
        """After epoch ``epoch``'s step: checkpoint every ``every`` epochs, and stop if a signal came."""
        if self.stop_signal is not None or (self.every and epoch % self.every == 0):
            self.save(epoch, last_state, first_loss)
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            raise Interrupted(f"stopped by {name} after epoch {epoch} of {self.settings.get('epochs')}; the "
                              f"checkpoint in {str(self.folder)!r} holds the run", signum=self.stop_signal,
                              resumable=True)

    @contextmanager
    def on_signals(self, on_stop: Callable[[], None] | None = None):
        """While inside, the first SIGINT/SIGTERM asks training to stop after the epoch; a second stops at once.

        ``on_stop`` runs before :class:`~torchlinreg.errors.Interrupted` leaves (e.g. to close
        a progress bar). Only in the main thread (Python delivers signals there); elsewhere
        it changes nothing.
        """
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        if threading.current_thread() is not threading.main_thread() or None in previous.values():
            yield self  # not the main thread, or a handler set outside Python that could not be put back
            return

        def handler(signum, frame):
            if self.stop_signal is None:
                self.stop_signal = signum
                return
            for s, h in previous.items():  # a third signal gets the usual treatment
                signal.signal(s, h)
            name = signal.Signals(signum).name
            held = (f"the checkpoint in {str(self.folder)!r} holds epoch {self.saved_epoch}"
                    if self.saved_epoch is not None else "no checkpoint had been written")
            raise Interrupted(f"stopped at once by a second {name}; {held}", signum=signum,
                              resumable=self.saved_epoch is not None)

        for s in SIGNALS:
            signal.signal(s, handler)
        try:
            yield self
        except Interrupted:
            if on_stop is not None:
                on_stop()
            raise
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # --- writing -----------------------------------------------------------------------------------

    def save(self, epoch: int, last_state: dict[str, torch.Tensor], first_loss: float) -> None:
        """Write the state after ``epoch`` epochs (``bind`` must have been called).

        A write that fails (a full disk) leaves the previous checkpoint as it was and no new
        tensors file; the message says from which epoch the run can be resumed.
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the checkpoint folder {str(self.folder)!r} "
                              f"({exc.strerror or exc}); pass {{out_dir}} with a folder you can write to") from None
        name = f"state-{epoch:06d}.safetensors"
        try:
            self._append_history()
            blob, state = self._state(epoch, last_state, first_loss, name)
            atomic_write_bytes(self.folder / name, blob)
            atomic_write_text(self.folder / CHECKPOINT_STATE, json.dumps(seal(state), indent=1) + "\n")  # the commit
        except OutputError as exc:
            if name != self._committed_file:
                (self.folder / name).unlink(missing_ok=True)  # state.json does not name it: no new tensors file stays
            raise OutputError(f"{exc.template}; {self._resumable()}") from None
        self.saved_epoch, self._committed_file = epoch, name
        for old in self.folder.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _resumable(self) -> str:
        if self.saved_epoch is None:
            return "no checkpoint of this run was complete: run it again"
        return (f"the checkpoint of epoch {self.saved_epoch} in {str(self.folder)!r} is whole: once there is room, "
                "resume from it with {resume=True}")

    def _state(self, epoch: int, last_state: dict[str, torch.Tensor], first_loss: float,
               name: str) -> tuple[bytes, dict]:
        """The tensors file's bytes and state.json's content (unsealed) after ``epoch`` epochs."""
        tensors: dict[str, torch.Tensor] = {}
        for param, p in self._model.named_parameters():
            tensors[f"model.{param}"] = p.detach().cpu().clone()
            tensors[f"last.{param}"] = last_state[param].detach().cpu().clone()
        optimizer = encode(self._optimizer.state_dict(), tensors, "optimizer")
        scheduler = None if self._scheduler is None else encode(self._scheduler.state_dict(), tensors, "scheduler")
        if self._generator is not None:
            tensors["rng.shuffle"] = self._generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
        blob = sorted_metadata(safetensors.torch.save(tensors, metadata={"format": CHECKPOINT_FORMAT}))
        return blob, {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "epoch": epoch,
            "every": self.every,
            "settings": self.settings,
            "data_sha256": self._data_sha256(),
            "tensors": {"file": name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)},
            "history": {"records": self._log_records, "bytes": self._log_bytes, "sha256": self._log_hash.hexdigest()},
            "optimizer": optimizer,
            "scheduler": scheduler,
            "plateau": {"best": self._plateau.best, "stale": self._plateau.stale},
            "first_loss": first_loss,
            "numpy_rng": [kind, int(pos), int(has_gauss), float(cached)],
        }

    def _append_history(self) -> None:
        """Append the records since the last checkpoint to the log, at the byte where the valid part ends."""
        new = self._history.records[self._log_records:]
        lines = "".join(json.dumps({"epoch": r.epoch, "loss": r.loss, "params": r.params, "lr": r.lr,
                                    "val_loss": r.val_loss}) + "\n" for r in new).encode("utf-8")
        path = self.folder / HISTORY_LOG
        try:
            with open(path, "r+b" if path.exists() else "wb") as f:
                f.seek(self._log_bytes)
                f.write(lines)
                f.truncate()  # drop a torn append of a checkpoint that never committed
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write the checkpoint's history {str(path)!r} ({exc.strerror or exc}); "
                              "free some space or pass {out_dir} with another folder") from None
        self._log_hash.update(lines)
        self._log_bytes += len(lines)
        self._log_records += len(new)

    def remove(self) -> None:
        """Delete the checkpoint's files (the run finished and wrote its outputs); other files stay."""
        if not self.folder.is_dir():
            return
        (self.folder / CHECKPOINT_STATE).unlink(missing_ok=True)  # first: the folder stops claiming a checkpoint
        for path in self.folder.iterdir():
            if path.name == HISTORY_LOG or (path.name.startswith(("state-", ".state-", ".state.json.", ".history."))
                                            and path.is_file()):
                path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:  # it holds files that are not ours
            pass

    def _data_sha256(self) -> str:
        if self._data_sha is None:
            self._data_sha = self._data_hash()
        return self._data_sha

    # --- reading -----------------------------------------------------------------------------------

    def _damaged(self, what: str) -> CheckpointError:
        return CheckpointError(f"the checkpoint in {str(self.folder)!r} cannot be used: {what}; {START_OVER}")

    def _load(self) -> tuple[dict, dict[str, torch.Tensor], list[EpochRecord]]:
        """state.json, the tensors and the history records, each read bounded and checked, and the settings
        and data compared."""
        try:
            state = unseal(self.folder / CHECKPOINT_STATE)
        except OSError as exc:
            raise self._damaged(f"cannot read {CHECKPOINT_STATE} ({exc.strerror or exc})") from None
        except ValueError as exc:
            if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
                raise self._damaged(f"{CHECKPOINT_STATE} is not valid JSON, perhaps truncated ({_one_line(exc)})") \
                    from None
            raise self._damaged(_one_line(exc if CHECKPOINT_STATE in str(exc) else f"{CHECKPOINT_STATE}: {exc}")) \
                from None
        self._check_same(state)
        file, n_bytes = state["tensors"]["file"], state["history"]["bytes"]
        blob = _read(self.folder / file, state["tensors"]["bytes"], self._damaged)
        if hashlib.sha256(blob).hexdigest() != state["tensors"]["sha256"]:
            if _looks_like_pickle(blob):
                raise self._damaged(f"{file} is a pickle/torch.save file; torchlinreg never loads pickles")
            raise self._damaged(f"{file} does not match the SHA-256 in {CHECKPOINT_STATE} (changed or truncated)")
        try:
            tensors = safetensors.torch.load(blob)
        except Exception as exc:  # SafetensorError and friends
            raise self._damaged(f"{file} is corrupt ({_one_line(exc)})") from None

        valid = _read(self.folder / HISTORY_LOG, n_bytes, self._damaged, prefix=True)
        if hashlib.sha256(valid).hexdigest() != state["history"]["sha256"]:
            raise self._damaged(f"{HISTORY_LOG} is shorter than, or differs from, what {CHECKPOINT_STATE} records")
        records = _records(valid, self._damaged)
        if len(records) != state["history"]["records"] or len(records) != state["epoch"]:
            raise self._damaged(f"{HISTORY_LOG} holds {len(records)} epochs, the checkpoint is at epoch "
                                f"{state['epoch']}")
        self._log_bytes, self._log_records, self._log_hash = len(valid), len(records), hashlib.sha256(valid)
        self.saved_epoch, self._committed_file = state["epoch"], file
        return state, tensors, records

    def _check_same(self, state: dict) -> None:
        """Refuse a checkpoint made with other settings or other data."""
        saved = state["settings"]
        changed = [f"{key} is {self.settings.get(key)!r} here but {saved.get(key)!r} in the checkpoint"
                   for key in sorted(set(saved) | set(self.settings)) if saved.get(key) != self.settings.get(key)]
        where = f"cannot resume from {str(self.folder)!r}"
        if changed:
            raise ConfigError(f"{where}: {'; '.join(changed)}; resume with the settings of the interrupted run, "
                              f"or {START_OVER}")
        if state["data_sha256"] != self._data_sha256():
            raise ConfigError(f"{where}: the data differ from those it was made with ({self._data_what}); "
                              f"pass the same data and columns, or {START_OVER}")


def _read(path: Path, n_bytes: int, damaged, *, prefix: bool = False) -> bytes:
    """The ``n_bytes`` bytes of the regular file ``path`` (``prefix``: its first ``n_bytes``), never more."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise damaged(f"cannot read {path.name} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise damaged(f"{path.name} is not a regular file")
        if st.st_size < n_bytes or (st.st_size != n_bytes and not prefix):
            if _looks_like_pickle(os.pread(fd, 4, 0)):
                raise damaged(f"{path.name} is a pickle/torch.save file; torchlinreg never loads pickles")
            raise damaged(f"{path.name} holds {st.st_size:,} bytes, {CHECKPOINT_STATE} records {n_bytes:,}")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(n_bytes)
    except OSError as exc:
        raise damaged(f"cannot read {path.name} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


HISTORY_FIELDS = {"epoch", "loss", "params", "lr", "val_loss"}


def _records(valid: bytes, damaged) -> list[EpochRecord]:
    """The records of the history log's valid part, each line parsed depth-safe and its fields checked."""
    records = []
    for i, line in enumerate(valid.splitlines(), start=1):
        try:
            record = parse_json(line)
        except ValueError as exc:
            raise damaged(f"{HISTORY_LOG} holds an invalid record ({_one_line(exc)})") from None
        if not isinstance(record, dict) or set(record) != HISTORY_FIELDS or record["epoch"] != i \
                or not isinstance(record["params"], dict):
            raise damaged(f"{HISTORY_LOG}'s line {i} is not the record of epoch {i}")
        records.append(EpochRecord(**record))
    return records
