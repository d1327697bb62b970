"""``hrseg ui`` in a real headless browser (Debian's chromium + chromedriver via selenium).

A real smoke run fills a temporary SQLite store: ``hrseg synth`` + ``hrseg prepare
cityscapes`` + a two-iteration ``hrseg train`` of a tiny HRNet-OCR + ``hrseg evaluate`` on two
images, with ``MLFLOW_TRACKING_URI`` pointing at the store. Then the MLflow UI is started the way
``hrseg ui`` starts it and the browser checks what a user sees:

- the experiment's runs list shows both runs, and the mIoU column added through the
  "Columns" menu shows the evaluation's logged mIoU;
- the evaluation run's page shows its parameters (resolved values) and metrics;
- the artifact view shows the confusion-matrix PNG (the image really loads).

A screenshot of each page is saved under the test's temporary directory (path printed and
recorded as the ``ui_screenshots`` property) and copied to ``<repo>/test-artifacts/ui/`` when
``$HRSEG_TEST_ARTIFACTS`` is set. Skipped, with the reason, only where chromium or chromedriver
is not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parent.parent
WAIT_S = 90  # page waits; generous for a busy 2-core CI machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install -y chromium chromium-driver (.ci/run installs them)",
    ),
]

TINY = {
    "model.backbone": "hrnetv2_w18_small_v1",
    "model.ocr_mid_channels": "32",
    "model.ocr_key_channels": "16",
    "data.train_split": "mini",
    "data.crop_size": "[64,128]",
    "data.base_size": "256",
    "data.num_workers": "0",
    "data.val_num_samples": "2",
    "train.pretrained": "null",
    "train.epochs": "1",
    "train.batch_size": "2",
    "train.log_every": "1",
    "eval.crop_size": "[128,256]",
    "eval.base_size": "256",
    "eval.num_overlays": "1",
}


# --------------------------------------------------------------------------------------
# Fixtures: smoke run, server, browser
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env():
    """No telemetry, no browser/driver downloads, nothing leaking in from the caller's MLflow/DVC."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("MLFLOW_", "DVC_")):
                mp.delenv(name)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("DO_NOT_TRACK", "true")
        mp.setenv("SE_OFFLINE", "true")
        yield mp


@pytest.fixture(scope="module")
def smoke_store(env, tmp_path_factory) -> dict:
    """A store filled by the real commands; returns ids, names and the evaluation metrics."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from hrseg.cli import app

    base = tmp_path_factory.mktemp("ui_smoke")
    uri = f"sqlite:///{(base / 'mlflow.db').as_posix()}"
    runner = CliRunner()

    def hrseg(*args: str) -> None:
        result = runner.invoke(app, list(args), env={"MLFLOW_TRACKING_URI": uri})
        assert result.exit_code == 0, f"hrseg {' '.join(args)} failed:\n{result.output}"

    raw, lists = base / "raw", base / "lists" / "cityscapes"
    hrseg("synth", "--out", str(raw), "-d", "cityscapes")
    hrseg("prepare", "cityscapes", "--root", str(raw / "cityscapes"), "--out", str(lists), "--workers", "1")
    train_lines = (lists / "train.lst").read_text().splitlines()
    (lists / "mini.lst").write_text("\n".join(train_lines[:4]) + "\n")  # two iterations of two images

    sets = [a for k, v in {**TINY, "data.root": str(raw / "cityscapes"), "data.lists": str(lists)}.items() for a in ("--set", f"{k}={v}")]
    hrseg("train", "cityscapes_ocr", "--out", str(base / "model"), "--device", "cpu", *sets)
    hrseg("evaluate", "cityscapes_ocr", "-c", str(base / "model" / "final.pth"), "--out", str(base / "eval"), "--device", "cpu", "--num-samples", "2", *sets)

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("hrseg/cityscapes")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = {r.data.tags.get("hrseg.stage"): r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"train", "eval"}, runs
    return {"uri": uri, "experiment_id": experiment.experiment_id, "train": runs["train"], "eval": runs["eval"], "base": base}


@pytest.fixture(scope="module")
def ui_url(smoke_store):
    from hrseg.tracking.ui import start_ui_background

    with start_ui_background(smoke_store["uri"]) as url:
        yield url


@pytest.fixture(scope="module")
def browser(env):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hrseg-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1920,1080",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """``shot(driver, name)`` saves ``<dir>/<name>.png`` (and a copy for CI when asked)."""
    from hrseg import io as hio

    folder = tmp_path_factory.mktemp("ui_screenshots")
    copy_to = REPO / "test-artifacts" / "ui" if os.environ.get("HRSEG_TEST_ARTIFACTS") else None

    def shot(driver, name: str) -> Path:
        png = driver.get_screenshot_as_png()
        path = folder / f"{name}.png"
        hio.write_bytes(path, png)
        if copy_to is not None:
            hio.write_bytes(copy_to / path.name, png)
        print(f"screenshot: {path}" + (f" (copy in {copy_to})" if copy_to else ""))
        return path

    shot.folder = folder  # type: ignore[attr-defined]
    return shot


# --------------------------------------------------------------------------------------
# Page helpers (MLflow 3's React UI)
# --------------------------------------------------------------------------------------


def page(url: str, route: str) -> str:
    """A UI route in the "Model training" view (MLflow 3 opens experiments in the GenAI view)."""
    return f"{url}/#{route}{'&' if '?' in route else '?'}workflowType=machine_learning"


def wait(driver, condition, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=(Exception,)).until(condition)
    except TimeoutException:
        text = driver.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"timed out after {timeout} s waiting for {what} on {driver.current_url}; page text:\n{text}") from None


def page_text_with(driver, strings: list[str], what: str) -> str:
    """Wait until the page's text contains every one of ``strings``; return the text."""

    def ready(d):
        text = d.find_element("tag name", "body").text
        return text if all(s in text for s in strings) else None

    try:
        return wait(driver, ready, what)
    except AssertionError as exc:
        text = driver.find_element("tag name", "body").text
        raise AssertionError(f"{exc}\nmissing: {[s for s in strings if s not in text]}") from None


def close_assistant(driver) -> None:
    """Close the "MLflow Assistant" side panel when it is open (it narrows the page)."""
    for button in driver.find_elements("css selector", 'button[data-component-id="mlflow.assistant.chat_panel.close"]'):
        if button.is_displayed():
            button.click()


def show_columns(driver, names: list[str]) -> None:
    """Tick ``names`` (metric/param keys) in the runs table's "Columns" menu, then close it."""
    from selenium.webdriver.common.keys import Keys

    button = wait(driver, lambda d: next(b for b in d.find_elements("css selector", "button") if b.text.strip() == "Columns"), "the Columns button")
    button.click()
    for name in names:
        box = wait(
            driver,
            lambda d, name=name: d.find_element(
                "xpath", f'//span[contains(@class,"tree-node-content-wrapper") and @title="{name}"]/preceding-sibling::span[contains(@class,"tree-checkbox")]'
            ),
            f"{name!r} in the Columns menu",
        )
        box.click()
    driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)


#: Page script: fetch a (blob:) URL and hand back its bytes as base64.
FETCH_BASE64 = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(r => r.arrayBuffer()).then(buffer => {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  done(btoa(text));
}).catch(error => done("ERR " + error));
"""


def cell(driver, run_id: str, column: str) -> str:
    """Text of the runs-table cell of ``run_id`` in ``column`` (``metrics.`miou```, ...)."""
    cells = driver.find_elements("css selector", f'[role=row][row-id="{run_id}"] [col-id="{column}"]')
    texts = [c.text.strip() for c in cells if c.text.strip()]
    if not texts:
        raise LookupError(column)
    return texts[0]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_runs_list_shows_runs_and_miou(smoke_store, ui_url, browser, screenshots, record_property):
    record_property("ui_screenshots", str(screenshots.folder))
    train, evaluation = smoke_store["train"], smoke_store["eval"]
    browser.get(page(ui_url, f"/experiments/{smoke_store['experiment_id']}/runs"))
    names = {r.info.run_id: r.info.run_name for r in (train, evaluation)}
    for run_id, name in names.items():
        shown = wait(browser, lambda d, run_id=run_id: cell(d, run_id, "attributes.`Run Name`"), f"run {name!r} in the runs list")
        assert name in shown or shown.rstrip(".") in name, (shown, name)
    page_text_with(browser, ["hrseg/cityscapes", "2 matching runs"], "the experiment name and run count")

    close_assistant(browser)
    show_columns(browser, ["miou", "final_miou"])
    eval_miou = float(wait(browser, lambda d: cell(d, evaluation.info.run_id, "metrics.`miou`"), "the eval run's miou cell"))
    assert eval_miou == pytest.approx(evaluation.data.metrics["miou"], rel=1e-6)
    assert eval_miou == pytest.approx(json.loads((smoke_store["base"] / "eval" / "metrics.json").read_text())["miou"], abs=1e-6)
    train_miou = float(wait(browser, lambda d: cell(d, train.info.run_id, "metrics.`final_miou`"), "the train run's final_miou cell"))
    assert train_miou == pytest.approx(train.data.metrics["final_miou"], rel=1e-6)
    header = browser.find_element("css selector", '[role=columnheader][col-id="metrics.`miou`"]').text
    assert "miou" in header
    screenshots(browser, "1_runs_list")


def test_run_page_shows_params_and_metrics(smoke_store, ui_url, browser, screenshots):
    evaluation = smoke_store["eval"]
    browser.get(page(ui_url, f"/experiments/{smoke_store['experiment_id']}/runs/{evaluation.info.run_id}"))
    params, metrics = evaluation.data.params, evaluation.data.metrics
    expected = [
        evaluation.info.run_name,
        f"Metrics ({len(metrics)})",
        "miou",
        str(metrics["miou"]),  # the metrics table shows the logged value
        f"Parameters ({len(params)})",
        *("model.backbone", "model.head", "train.lr", "data.dataset"),
        "hrnetv2_w18_small_v1",  # resolved values as they ran: the tiny model, not the recipe file's W48
        *("hrseg.stage", "hrseg.recipe"),  # tags
    ]
    text = page_text_with(browser, expected, "the run's metrics, parameters and tags")
    assert params["model.backbone"] == "hrnetv2_w18_small_v1" and "eval" in text
    close_assistant(browser)
    screenshots(browser, "2_eval_run_page")


def test_artifact_view_shows_confusion_matrix(smoke_store, ui_url, browser, screenshots):
    evaluation = smoke_store["eval"]
    run_id = evaluation.info.run_id
    browser.get(page(ui_url, f"/experiments/{smoke_store['experiment_id']}/runs/{run_id}/artifacts/results/confusion_matrix.png"))

    def loaded_image(d):
        # the artifact viewer fetches the file and shows it from a blob: URL
        for img in d.find_elements("css selector", "img"):
            src = img.get_attribute("src") or ""
            if src.startswith("blob:") and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img):
                return img
        return None

    img = wait(browser, loaded_image, "the confusion-matrix image to load")
    close_assistant(browser)
    # the file's title, and the artifact tree with the other results (it may still be loading)
    page_text_with(browser, ["results/confusion_matrix.png", "metrics.json", "per_class.csv", "overlays"], "the artifact tree")
    # the picture on the page is, byte for byte, the confusion matrix that evaluation wrote
    browser.set_script_timeout(30)
    shown = browser.execute_async_script(FETCH_BASE64, img.get_attribute("src"))
    assert not shown.startswith("ERR"), shown
    written = (smoke_store["base"] / "eval" / "confusion_matrix.png").read_bytes()
    assert base64.b64decode(shown) == written
    from PIL import Image

    with Image.open(smoke_store["base"] / "eval" / "confusion_matrix.png") as picture:
        assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img) == list(picture.size)
    screenshots(browser, "3_confusion_matrix_artifact")
