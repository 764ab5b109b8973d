"""Execute docs/tutorial.ipynb in place and render it to docs/tutorial.html.

Usage: ``scripts/run-notebook`` (which runs this file with the project's virtual environment), or
``.venv/bin/python scripts/notebook.py [NOTEBOOK]``. ``tests/test_notebook.py`` loads this file for
:func:`execute` and :func:`to_html`, so the test runs the notebook exactly as the script does.

The kernel is the running interpreter (``sys.executable``, ipykernel's own spec): no kernel spec is
installed or read from the user's Jupyter folders; the connection file, the kernel's sockets (IPC, no TCP
port) and IPython's profile lie in a temporary folder; and the kernel imports torchlinreg from the same
place this process does. The HTML page is nbconvert's ``lab`` template without its scripts (require.js,
MathJax and Mermaid from a CDN): the notebook needs none, and its images are embedded as ``data:`` URIs,
so the page loads with no network.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
CELL_TIMEOUT = 120  # seconds for one cell; the whole notebook takes about 15 s
# The lab template less its <script> tags: the notebook has no widgets, no LaTeX and no Mermaid.
PAGE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def kernel_environment(folder: Path) -> dict[str, str]:
    """This process's environment, with torchlinreg's folder first on PYTHONPATH and IPython's profile in ``folder``."""
    import torchlinreg

    src = str(Path(torchlinreg.__file__).resolve().parent.parent)
    path = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), IPYTHONDIR=str(folder / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("MPLBACKEND", None)  # the notebook's %matplotlib inline shows its figures
    return env


def execute(nb, cwd: Path, timeout: int = CELL_TIMEOUT):
    """Run every cell of ``nb`` (a NotebookNode, changed in place) in a fresh kernel started in ``cwd``.

    A cell that raises stops the run with :class:`nbclient.exceptions.CellExecutionError`, which
    shows the cell and its traceback.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="notebook-kernel-") as folder:
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]),
                                transport="ipc" if os.name == "posix" else "tcp",  # Unix sockets: no port opened
                                connection_file=str(Path(folder) / "kernel.json"))
        client = NotebookClient(nb, km=km, timeout=timeout, record_timing=False, coalesce_streams=True,
                                resources={"metadata": {"path": str(cwd)}})
        client.execute(cleanup_kc=True, env=kernel_environment(Path(folder)))  # and shut the kernel down
        if km.kernel_spec.argv[0] != sys.executable:  # ipykernel's own spec runs sys.executable
            raise RuntimeError(f"the kernel ran {km.kernel_spec.argv[0]}, not this interpreter {sys.executable}")
    return nb


def to_html(nb, name: str = "tutorial") -> str:
    """The page of ``nb``: its cells, their outputs, the images embedded; no script, nothing fetched."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"page.html.j2": PAGE_TEMPLATE})],
                            template_file="page.html.j2", embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": name}})
    return body


def main(argv: list[str] | None = None) -> int:
    import nbformat

    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]).resolve() if argv else NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    execute(nb, path.parent)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    html = path.with_suffix(".html")
    html.write_text(to_html(nb, path.stem), encoding="utf-8")
    print(f"executed {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}; wrote {html.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
