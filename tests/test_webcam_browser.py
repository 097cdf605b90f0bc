"""The webcam widget end to end in a real browser: fake camera -> JPEG -> kernel -> boxes on the page.

Voila executes a tiny notebook that shows `fer_utils.webcam.webcam_view` for a random-init 7-class
model; headless Chromium, whose fake camera plays a clip of matplotlib's sample photo of a real
face, opens the page. The test skips when Chromium, Playwright, Voila or anywidget is missing,
unless `FER_REQUIRE_BROWSER=1` (CI), where it fails instead.
"""

import importlib.util
import os

import pytest

import webcam_browser

RESULTS = 6  # answers from the kernel to wait for


def _missing() -> str | None:
    for module in ("anywidget", "voila", "playwright"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package '{module}' is not installed (pip install -e '.[test]')"
    if webcam_browser.chromium_path() is None:
        return "no Chromium at /usr/bin/chromium (apt-get install -y chromium, or set FER_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser_state(tmp_path_factory):
    reason = _missing()
    if reason is not None:
        if os.environ.get("FER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FER_REQUIRE_BROWSER=1 but {reason}.")
        pytest.skip(reason)
    import keras

    from fer_utils import models

    folder = tmp_path_factory.mktemp("webcam")
    keras.utils.set_random_seed(0)
    model_path = folder / "model.keras"
    models.build_model("small_cnn", weights=None, seed=0).save(model_path)
    y4m = webcam_browser.write_face_y4m(folder / "face.y4m")
    notebook = webcam_browser.write_widget_notebook(folder / "webcam.ipynb", model_path)
    with webcam_browser.voila_server(notebook) as url:
        with webcam_browser.fake_camera_page(y4m, webcam_browser.chromium_path()) as page:
            try:
                state = webcam_browser.run_widget(page, url, RESULTS, timeout_s=150)
            except Exception as error:
                raise AssertionError(
                    f"The widget did not answer {RESULTS} frames: {error}\n"
                    f"page: {page.evaluate(webcam_browser.READ_STATE)}\nVoila log: {webcam_browser.voila_log(notebook)}"
                ) from error
    print(f"webcam end to end: {state['fps']} fps ({state['results']} answers)")
    return state


def test_frames_reach_the_kernel(browser_state):
    assert int(browser_state["framesSent"]) >= RESULTS
    assert int(browser_state["kernelFrames"]) >= RESULTS - 1  # the trait may trail the last reply


def test_the_face_is_found_and_labelled(browser_state):
    from fer_utils import CLASS_NAMES

    assert int(browser_state["faces"]) == 1, webcam_browser.describe(browser_state)
    assert browser_state["labels"] in CLASS_NAMES
    assert browser_state["kernelLabels"] in CLASS_NAMES


def test_boxes_are_drawn_over_the_picture_with_fps(browser_state):
    assert browser_state["state"] == "running"
    # A box of ~200 px at 2+ px line width alone has well over 1000 green pixels.
    assert browser_state["overlayPixels"] > 1000, webcam_browser.describe(browser_state)
    assert float(browser_state["fps"]) > 0
    assert "fps end to end" in browser_state["status"]


def test_the_smoothed_label_of_the_face_stays_the_same_over_consecutive_frames(browser_state):
    labels = browser_state["topLabels"].split(",")  # the largest face's label in each answer, oldest first
    assert len(labels) >= RESULTS - 1, webcam_browser.describe(browser_state)
    settled = labels[2:]  # the average starts from the first frame's probabilities
    assert len(settled) >= 3 and len(set(settled)) == 1, f"the label changed between frames: {labels}"
    assert settled[-1] in browser_state["status"]  # shown beside the picture with its bar chart
