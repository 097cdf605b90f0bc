"""nbval settings for the notebook series.

The notebooks run with `--nbval-lax`: only cells tagged `nbval-check-output` (in the `.py` twin:
`# %% tags=["nbval-check-output"]`; dataset counts, shapes, class names) are compared with their
committed outputs. Everything else is executed and must not raise, but its output is not compared.
"""


def pytest_collectstart(collector):
    # TensorFlow's start-up logs and progress bars go to stderr and differ between machines; HTML
    # and JavaScript outputs are renderings of values that are compared through text/plain.
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript")
