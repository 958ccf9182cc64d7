"""The page of GET / in headless Chromium (Debian's chromium, driven by Playwright): a toy image
picked and one dropped, the boxes drawn on the canvas, the threshold slider redrawing without a
new request, an error shown for a file that is not an image.

RESNET_DET_SCREENSHOT=docs/images/serve_page.png also saves the page's screenshot there (the one
in docs/deploy.md)."""
import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("no chromium: apt-get install -y chromium (tools/setup_env.sh does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
pytest.importorskip("uvicorn", reason='the serving extra is not installed: pip install ".[serve]"')

import httpx  # noqa: E402
from test_serve import export_tiny, running  # noqa: E402

from projects.toy_data import make_coco  # noqa: E402
from resnet_det.deploy import OnnxDetector  # noqa: E402
from resnet_det.serve import create_app  # noqa: E402

# Debian's chromium without the network services a headless test does not need (their outbound
# connections fail noisily here).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _edge_pixels(page, box):
    """RGBA of the canvas along the bottom edge of ``box`` (image pixels, scaled as drawn)."""
    return np.array(page.evaluate("""(box) => {
        const canvas = document.getElementById('view');
        const scale = canvas.width / document.getElementById('view').dataset.imageWidth;
        const [x1, y2, x2] = [box[0] * scale, box[3] * scale, box[2] * scale];
        const row = Math.min(Math.round(y2), canvas.height - 1);
        const data = canvas.getContext('2d').getImageData(Math.round(x1) + 2, row, Math.round(x2 - x1) - 4, 1).data;
        return Array.from(data);
    }""", box)).reshape(-1, 4)


def test_page_draws_the_boxes_and_the_slider_redraws_without_a_request(tmp_path):
    detector = OnnxDetector(export_tiny(tmp_path / "model"), threads=2)
    toy = make_coco(tmp_path / "toy", num_train=0, num_val=1, size=(384, 512))
    image = next(Path(toy["val_images"]).glob("*.jpg"))
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image\n")
    with running(create_app(detector)) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        detects = []
        page.on("request", lambda r: detects.append(r) if r.url.endswith("/v1/detect") else None)
        page.goto(url)
        page.wait_for_function("document.getElementById('model').textContent.includes('circle')")

        with page.expect_response("**/v1/detect") as answer:
            page.set_input_files("#file", str(image))
        assert answer.value.status == 200
        # What the page received (Chromium does not keep the body for Playwright to read).
        result = httpx.post(f"{url}/v1/detect", content=image.read_bytes()).json()
        scores = np.array(result["scores"])
        assert result["image"] == {"width": 512, "height": 384} and len(scores) > 10
        # The slider starts at 0.5; an untrained detector's scores are lower: none drawn yet.
        page.wait_for_function("document.getElementById('status').textContent.includes('detections')")
        drawn = lambda: int(page.get_attribute("#view", "data-drawn"))  # noqa: E731
        assert drawn() == int((scores >= 0.5).sum())
        page.fill("#threshold", "0")
        assert drawn() == len(scores)
        best = result["boxes"][int(np.argmax(scores))]
        with_boxes = _edge_pixels(page, best)
        cut = np.sort(scores)[-5]  # the five best
        page.fill("#threshold", f"{np.floor(cut * 100) / 100:.2f}")
        assert drawn() == int((scores >= np.floor(cut * 100) / 100).sum()) >= 5
        if os.environ.get("RESNET_DET_SCREENSHOT"):  # 256 colours: a third of the bytes
            shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
            shot.quantize(256, dither=Image.Dither.NONE).save(os.environ["RESNET_DET_SCREENSHOT"], optimize=True)
        page.fill("#threshold", "1")
        assert drawn() == 0
        without = _edge_pixels(page, best)
        # The box's edge was drawn over the picture, and is gone again at threshold 1.
        assert (np.abs(with_boxes[:, :3].astype(int) - without[:, :3]).sum(axis=1) > 30).mean() > 0.8
        assert len(detects) == 1  # the slider only redraws

        # A dropped file is detected too.
        data = base64.b64encode(image.read_bytes()).decode()
        transfer = page.evaluate_handle("""(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));
            return transfer;
        }""", data)
        page.fill("#threshold", "0")
        with page.expect_response("**/v1/detect"):
            page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        page.wait_for_function(f"document.getElementById('view').dataset.drawn == {len(scores)}")

        # A file that is not an image: the server's message, in the page.
        with page.expect_response("**/v1/detect") as answer:
            page.set_input_files("#file", str(not_image))
        assert answer.value.status == 400
        page.wait_for_function("document.getElementById('status').className == 'error'")
        assert "cannot decode image" in page.text_content("#status")
        browser.close()
