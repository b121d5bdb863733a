"""CVAT's web UI driven as a person uses it: headless Chromium through selenium (test infrastructure).

The browser tests (tests/test_browser.py) run against a real CVAT with its UI (the team harness's
`ui-setup.sh`, then `start.sh`, which exports CVAT_UI_URL). Selectors are CVAT 2.23's own class names
(cvat-ui and cvat-canvas); every wait names what it waited for, so a UI change fails with a reason.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 90  # seconds for one step of the UI (CVAT's first page load compiles nothing, but 2 cores are slow)


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.environ.get("CVAT_UI_URL"):
        return ("no CVAT web UI: CVAT_UI_URL is unset (make test-browser sets up and starts one from "
                "../shared/realcvat, or set CVAT_URL/CVAT_UI_URL/CVAT_USER/CVAT_PASSWORD)")
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(tool):
            return f"no {tool} (CHROMIUM / CHROMEDRIVER name the browser and its driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements/dev.txt)"
    return None


@contextmanager
def chromium(size: tuple[int, int] = (1600, 1000)) -> Iterator:
    """A headless Chromium (software GL, no proxy: CVAT's canvas needs WebGL only for masks).

    Its profile and every temporary file it or chromedriver makes live in one folder of ours, removed on
    exit: left to itself, Chromium leaves a `.org.chromium.Chromium.*` profile in the temp dir per run."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="cals-chromium-", ignore_cleanup_errors=True) as home:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size[0]},{size[1]}",
                    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-proxy-server",
                    "--lang=en-US", f"--user-data-dir={home}/profile", f"--crash-dumps-dir={home}/crashes"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(shutil.which(CHROMEDRIVER), env={**os.environ, "TMPDIR": home})
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()


@dataclass
class CanvasPoint:
    """One point of a skeleton as the canvas draws it."""

    label_id: int
    x: float  # page (CSS) pixels
    y: float
    hidden: bool  # outside (or hidden): CVAT does not show it


class CvatUi:
    """The pages and controls a test needs, named as the annotator sees them."""

    def __init__(self, driver, url: str, shots: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url, self.shots = driver, url.rstrip("/"), shots
        self.wait = WebDriverWait(driver, WAIT)

    # -- generic ---------------------------------------------------------------------------------
    def find(self, css: str, *, visible: bool = True, timeout: float = WAIT):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait

        condition = EC.visibility_of_element_located if visible else EC.presence_of_element_located
        return WebDriverWait(self.driver, timeout).until(condition((By.CSS_SELECTOR, css)),
                                                         f"no {css} within {timeout} s on {self.driver.current_url}")

    def all(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Click `css` once it is clickable and nothing lies over it: a closing modal's wrap (ant-modal-wrap)
        stays over the page for its fade-out and takes the click, for longer on a busy machine."""
        from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        def clicked():
            element = EC.element_to_be_clickable((By.CSS_SELECTOR, css))(self.driver)
            if not element:
                return False
            try:
                element.click()
            except (ElementClickInterceptedException, StaleElementReferenceException):
                return False
            return True

        self.wait.until(lambda _: clicked(), f"{css} is not clickable, or something else lies over it")

    def click_text(self, css: str, text: str) -> None:
        """Click the visible element matching `css` whose text is `text` (menus, options)."""
        element = self.until(lambda: next((e for e in self.all(css) if e.is_displayed() and e.text.strip() == text),
                                          None), f"{text!r} in {css}")
        element.click()

    def until(self, check: Callable, what: str, timeout: float = WAIT):
        """Poll `check` until it returns something truthy; fail naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = check()
            except Exception:  # a stale element while React re-renders: look again
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s on {self.driver.current_url}")
            time.sleep(0.3)

    def box(self, element) -> dict[str, float]:
        """Where the element is drawn on the page (CSS transforms included, unlike WebElement.rect)."""
        return self.driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                          "return {x: r.x, y: r.y, width: r.width, height: r.height};", element)

    def image_box(self) -> dict[str, float]:
        """Where the canvas draws the frame's image."""
        return self.box(self.find("#cvat_canvas_background", visible=False))

    def shot(self, name: str) -> Path:
        """The page as a JPEG (the generated frames are noise to PNG: 1 MB a shot, 0.2 MB as JPEG)."""
        import io

        from PIL import Image

        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.jpg"
        Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB").save(path, quality=85)
        return path

    def console_errors(self) -> list[str]:
        return [e["message"][:300] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    # -- pages -----------------------------------------------------------------------------------
    def login(self, user: str, password: str) -> None:
        self.driver.delete_all_cookies()
        self.driver.get(f"{self.url}/auth/login")
        self.find("input#credential").send_keys(user)
        self.find("input#password").send_keys(password)
        self.click("button.cvat-credentials-action-button")
        self.find(".cvat-tasks-page")

    def open_task_from_list(self, name: str) -> None:
        """Tasks page → the task card named `name` → Open."""
        self.driver.get(f"{self.url}/tasks")
        card = self.until(lambda: next((c for c in self.all(".cvat-tasks-list-item")
                                        if c.find_element("css selector", ".cvat-item-task-name").text == name), None),
                          f"task {name!r} in the task list")
        card.find_element("css selector", ".cvat-item-open-task-button").click()
        self.find(".cvat-task-details-wrapper")

    def open_job_from_task(self, job_id: int) -> None:
        """On a task page, the link "Job #id"."""
        link = self.until(lambda: next((a for a in self.all(".cvat-job-item a") if a.text == f"Job #{job_id}"), None),
                          f"Job #{job_id} on the task page")
        link.click()
        self.wait_for_frame()

    def open_job(self, task_id: int, job_id: int, frame: int | None = None) -> None:
        self.driver.get(f"{self.url}/tasks/{task_id}/jobs/{job_id}" + (f"?frame={frame}" if frame is not None else ""))
        self.wait_for_frame()

    def remember_filter(self, logic: dict) -> None:
        """Put a filter in the Filters dialog's "Recently used" list (browser storage, as CVAT keeps it)."""
        import json

        self.driver.execute_script("window.localStorage.setItem('annotationFiltersHistory', arguments[0]);",
                                   json.dumps([{"id": "cals-test", "logic": logic}]))

    def apply_recent_filter(self, text: str) -> None:
        """Filters → Recently used → the entry containing `text` → Submit."""
        self.click(".cvat-annotation-header-filters-button")
        self.find(".cvat-filters-modal-visible")
        self.click(".cvat-filters-modal-recently-used-button")
        entry = self.until(lambda: next((e for e in self.all(".cvat-recently-used-filters-dropdown li")
                                         if e.is_displayed() and text in e.text), None), f"{text!r} in Recently used")
        entry.click()
        self.until(lambda: self.find(".cvat-filters-modal-submit-button").is_enabled(), "the filter to load")
        self.click(".cvat-filters-modal-submit-button")
        self.until(lambda: not self.all(".cvat-filters-modal-visible"), "the Filters dialog to close")
        self.until(lambda: self.all(".cvat-annotation-header-filters-button.filters-armed"), "the filter to be on")
        time.sleep(1.0)  # the canvas redraws with the filtered objects

    def hover(self, element) -> None:
        """Move the mouse onto an element (CVAT activates the object under the mouse)."""
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).move_to_element(element).pause(0.5).perform()

    def canvas_texts(self) -> list[str]:
        """The texts the canvas shows beside objects (label, then "name: value" per attribute)."""
        return [e.text for e in self.all("#cvat_canvas_text_content .cvat_canvas_text") if e.text.strip()]

    # -- annotation view -------------------------------------------------------------------------
    def wait_for_frame(self) -> None:
        """The job view with its frame drawn and the objects list filled (or empty) for it."""
        self.find(".cvat-canvas-container")
        self.find(".cvat-player-filename-wrapper")
        self.until(lambda: not self.all(".cvat-spinner, .cvat-annotation-page-loading"), "the frame to load")
        time.sleep(1.0)  # the canvas redraws once after the objects arrive

    def frame_name(self) -> str:
        return self.find(".cvat-player-filename-wrapper").text.strip()

    def frame_number(self) -> int:
        return int(self.find(".cvat-player-frame-selector input", visible=False).get_attribute("value"))

    def next_frame(self) -> None:
        before = self.frame_name()
        self.click(".cvat-player-next-button")
        self.until(lambda: self.frame_name() != before, f"the frame after {before}")
        self.wait_for_frame()

    def sidebar_objects(self) -> list[str]:
        """Object types in the objects sidebar, e.g. 'SKELETON SHAPE'."""
        return [e.text.strip().upper() for e in self.all(".cvat-objects-sidebar-state-item-object-type-text")]

    def skeletons(self) -> list[list[CanvasPoint]]:
        """Each skeleton the canvas draws: its points with position and visibility."""
        found = []
        for group in self.all("#cvat_canvas_content .cvat_canvas_shape_skeleton"):
            points = []
            for circle in group.find_elements("css selector", "circle[data-label-id]"):
                box = self.box(circle)
                points.append(CanvasPoint(int(circle.get_attribute("data-label-id")),
                                          box["x"] + box["width"] / 2, box["y"] + box["height"] / 2,
                                          "cvat_canvas_hidden" in (circle.get_attribute("class") or "")))
            found.append(points)
        return found

    def circle(self, label_id: int, skeleton: int = 0):
        group = self.all("#cvat_canvas_content .cvat_canvas_shape_skeleton")[skeleton]
        return group.find_element("css selector", f'circle[data-label-id="{label_id}"]')

    def drag_point(self, label_id: int, dx: int, dy: int, skeleton: int = 0) -> None:
        """Hover the skeleton (CVAT activates it), then drag one of its points by (dx, dy) page pixels.

        The point is followed by its element id: an activated skeleton moves to the end of the SVG."""
        from selenium.webdriver.common.action_chains import ActionChains

        css = "#" + self.circle(label_id, skeleton).get_attribute("id")
        ActionChains(self.driver).move_to_element(self.find(css, visible=False)).pause(0.5).perform()
        self.until(lambda: "cvat_canvas_shape_draggable" in (self.find(css, visible=False).get_attribute("class") or ""),
                   "the point to become draggable")
        chain = ActionChains(self.driver).click_and_hold(self.find(css, visible=False)).pause(0.2)
        steps = 5
        for _ in range(steps):
            chain = chain.move_by_offset(dx / steps, dy / steps).pause(0.05)
        chain.release().perform()
        time.sleep(0.5)

    def save(self) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        self.click(".cvat-annotation-header-save-button")
        self.until(lambda: not self.all(".cvat-annotation-disabled-header-button.cvat-annotation-header-save-button"),
                   "the save to finish")
        ActionChains(self.driver).move_to_element(self.find(".cvat-player-filename-wrapper")).perform()  # no tooltip

    def finish_job(self) -> None:
        """Menu → Finish the job → Continue: CVAT saves and sets the job state to completed."""
        self.click(".cvat-annotation-header-menu-button")
        self.click_text(".cvat-annotation-menu li", "Finish the job")
        self.click(".cvat-modal-content-finish-job .ant-btn-primary")

    def ai_tools_detect(self, model_name: str, before_run: Callable = lambda: None) -> None:
        """AI Tools → Detectors → `model_name` → Annotate, with CVAT's own label mapping (same names);
        the popover is closed again once the request is done."""
        popover = ".cvat-tools-control-popover-content"
        self.click(".cvat-tools-control")
        self.find(popover)
        self.click_text(f"{popover} .ant-tabs-tab", "Detectors")
        self._pick_model(popover, model_name)
        before_run()
        self.click(f"{popover} .cvat-inference-run-button")
        self.until(lambda: not any(e.is_displayed() for e in self.all(".ant-modal-content"))
                   and self.all(".cvat-tools-control:not(.cvat-disabled-canvas-control)"), "the detector's answer")
        self.click(".cvat-tools-control")
        self.until(lambda: not any(e.is_displayed() for e in self.all(popover)), "AI Tools to close")

    def _pick_model(self, scope: str, model_name: str) -> None:
        self.click(f"{scope} .cvat-run-model-content .ant-select-selector")
        self.click_text(".ant-select-item-option", model_name)
        self.until(lambda: not any(e.is_displayed() for e in self.all(".ant-select-dropdown")), "the list to close")
        time.sleep(0.5)  # the mapping table fades in
        self.until(lambda: self.find(f"{scope} .cvat-inference-run-button").is_enabled(),
                   f"the Annotate button after choosing {model_name}")

    def task_card_text(self, task_name: str) -> str:
        """What the Tasks page shows on the card of `task_name` (progress, automatic annotation state)."""
        return next(c.text for c in self.all(".cvat-tasks-list-item")
                    if c.find_element("css selector", ".cvat-item-task-name").text == task_name)

    def automatic_annotation(self, task_name: str, model_name: str, before_run: Callable = lambda: None) -> None:
        """Tasks page → the task's Actions → Automatic annotation → `model_name` → Annotate."""
        self.driver.get(f"{self.url}/tasks")
        card = self.until(lambda: next((c for c in self.all(".cvat-tasks-list-item")
                                        if c.find_element("css selector", ".cvat-item-task-name").text == task_name),
                                       None), f"task {task_name!r} in the task list")
        card.find_element("css selector", ".cvat-item-open-task-actions").click()
        self.click_text(".cvat-actions-menu li", "Automatic annotation")
        scope = ".ant-modal-content"
        self.find(f"{scope} .cvat-run-model-content")
        self._pick_model(scope, model_name)
        before_run()
        self.click(f"{scope} .cvat-inference-run-button")
