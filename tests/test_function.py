"""The Nuclio function through nuclio_sdk's test platform: people found, CVAT shapes, bad input.

Uses the real RTMDet-nano person detector from ../shared (skipped where absent) and
the model trained by the session fixture `trained`.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib

import numpy as np
import nuclio_sdk.test
import pytest
from PIL import Image

from cals.metrics.evaluate import keypoints_array, oks
from cals.registry import Registry
from tests.test_function_helpers import (DETECTOR, FOUND_BAR, OKS_BAR, REAL, bgr_to_pil, call,
                                         copy_version, encode, skeleton_points)

pytestmark = pytest.mark.skipif(not DETECTOR.is_file(), reason="../shared detector not present")


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """(platform, registry): the function over a registry holding a copy of the trained model."""
    registry = Registry(tmp_path_factory.mktemp("served-registry"))
    registry.promote(copy_version(trained[1], registry).id)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_REGISTRY", str(registry.root))
        mp.setenv("CALS_DETECTOR", str(DETECTOR))
        mp.setenv("CALS_DEVICE", "cpu")
        mp.delenv("CALS_INIT_CHECKPOINT", raising=False)
        mp.delenv("CALS_POINT_THRESHOLD", raising=False)
        mp.delenv("CALS_MAX_PIXELS", raising=False)
        yield nuclio_sdk.test.Platform(), registry


@pytest.fixture(scope="module")
def val_people(synthetic):
    """[(image path, [GT annotations])] of the generated validation set."""
    coco = json.loads((synthetic / "val" / "annotations.json").read_text())
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    return [(synthetic / "val" / "images" / im["file_name"], by_image.get(im["id"], []))
            for im in coco["images"]]


def _b64_file(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _best_oks(shapes, ann, sigmas) -> float:
    gt = keypoints_array(ann)
    return max((oks(skeleton_points(s)[0], gt, sigmas, ann["area"]) for s in shapes), default=0.0)


def test_generated_people_come_back_as_matching_skeletons(served, val_people, schema):
    platform, registry = served
    sigmas = np.array(schema.sigmas)
    scores, found = [], 0
    for path, anns in val_people[:40]:
        status, shapes, headers = call(platform, {"image": _b64_file(path), "threshold": 0.0})
        assert status == 200, shapes
        assert headers["X-CALS-Model-Version"] == registry.current().id
        for shape in shapes:
            assert shape["label"] == schema.label and shape["type"] == "skeleton"
            assert [e["label"] for e in shape["elements"]] == schema.names
        for ann in anns:
            best = _best_oks(shapes, ann, sigmas)
            found += best > 0.1
            scores.append(best)
    detected = [s for s in scores if s > 0.1]
    print(f"people {len(scores)}, found {found}, mean OKS of found {np.mean(detected):.3f}")
    assert found >= FOUND_BAR * len(scores)
    assert np.mean(detected) > OKS_BAR


@pytest.fixture(scope="module")
def one_person(val_people):
    """(BGR image, GT annotation) of a generated frame with one clearly detected person."""
    import cv2

    from cals.model.detector import PersonDetector

    detector = PersonDetector(DETECTOR)
    for path, anns in val_people:
        image = cv2.imread(str(path))
        if len(anns) == 1 and len(boxes := detector(image)) == 1 and boxes[0, 4] > 0.6:
            return image, anns[0]
    pytest.fail("no generated frame with one confidently detected person")


def _exif_rotated(pil: Image.Image) -> Image.Image:
    """Pixels stored rotated by 90 degrees with EXIF orientation 6, so viewers show `pil`."""
    stored = pil.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.info["exif"] = exif.tobytes()
    return stored


@pytest.mark.parametrize("variant", ["jpeg", "png", "grey", "rgba", "exif-rotated"])
def test_image_formats_give_the_same_person(served, one_person, schema, variant):
    platform, _ = served
    image, ann = one_person
    pil = bgr_to_pil(image)
    body = {
        "jpeg": lambda: encode(pil, "JPEG", quality=95),
        "png": lambda: encode(pil, "PNG"),
        "grey": lambda: encode(pil.convert("L"), "PNG"),
        "rgba": lambda: encode(pil.convert("RGBA"), "PNG"),
        "exif-rotated": lambda: encode(_exif_rotated(pil), "JPEG", quality=95,
                                       exif=_exif_rotated(pil).info["exif"]),
    }[variant]()
    status, shapes, _ = call(platform, {"image": body, "threshold": 0})
    assert status == 200, shapes
    assert len(shapes) == 1
    points, _ = skeleton_points(shapes[0])
    # what the model is given: grey pixels stay grey (three equal channels), so its points on them are
    # that model's luck; the guarantee is that they equal those of the same grey pixels sent as RGB
    seen = pil.convert("L").convert("RGB") if variant == "grey" else pil
    if variant != "grey":
        assert oks(points, keypoints_array(ann), np.array(schema.sigmas), ann["area"]) > OKS_BAR
    _, reference, _ = call(platform, {"image": encode(seen, "PNG"), "threshold": 0})
    moved = np.linalg.norm(points - skeleton_points(reference[0])[0], axis=1)
    assert np.median(moved) < 3.0, moved  # pixels: the same person, in the frame CVAT shows


def test_threshold_sets_outside_and_drops_empty_skeletons(served, one_person, schema):
    platform, _ = served
    body = encode(bgr_to_pil(one_person[0]))
    outside = []
    for threshold in np.linspace(0, 1, 11):
        status, shapes, _ = call(platform, {"image": body, "threshold": float(threshold)})
        assert status == 200 and len(shapes) <= 1
        outside.append(sum(e["outside"] for e in shapes[0]["elements"]) if shapes else len(schema.names))
    assert outside[0] == 0 and outside[-1] == len(schema.names)  # at 1.0 nothing is sent
    assert outside == sorted(outside)  # a higher threshold never shows more points
    assert any(0 < n < len(schema.names) for n in outside), outside  # low points kept, marked outside


def test_every_skeleton_says_which_points_to_check(served, one_person, schema):
    """The answer carries the points-to-check attributes the spec declares, flagged by CALS_CHECK_BELOW."""
    from cals.cvat.point_checks import DEFAULT_CHECK_BELOW

    platform, _ = served
    status, shapes, _ = call(platform, {"image": encode(bgr_to_pil(one_person[0]))})
    assert status == 200 and shapes
    for shape in shapes:
        top = {a["name"]: a["value"] for a in shape["attributes"]}
        points = [{a["name"]: a["value"] for a in e["attributes"]} for e in shape["elements"]]
        shown = [p for p, e in zip(points, shape["elements"]) if not e["outside"]]
        assert all(p["check"] == ("true" if int(p["confidence"]) < DEFAULT_CHECK_BELOW * 100 else "false")
                   for p in shown if abs(int(p["confidence"]) - DEFAULT_CHECK_BELOW * 100) > 1)
        assert top["check"] == ("true" if any(p["check"] == "true" for p in shown) else "false")
        spine = [points[i] for i in schema.spine if not shape["elements"][i]["outside"]]
        assert int(top["spine_confidence"]) == min(int(p["confidence"]) for p in spine)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's first bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("body, message", [
    ({"threshold": 0.5}, "no 'image' field"),
    ({"image": "not base64 !!"}, "not valid base64"),
    ({"image": 42}, "must be a base64 string"),
    ({"image": base64.b64encode(b"GIF? no, plain text").decode()}, "not an image"),
    ({"image": base64.b64encode(b"\x89PNG\r\n\x1a\n truncated").decode()}, "image"),
    ({"image": ""}, "empty"),
    ({"image": base64.b64encode(_png_header_only(8000, 6000)).decode()}, "over the limit"),
    ({"image": base64.b64encode(_png_header_only(60000, 60000)).decode()}, "pixel"),
    ({"image": encode(Image.new("RGB", (8, 8))), "threshold": "high"}, "'threshold' must be"),
    ({"image": encode(Image.new("RGB", (8, 8))), "threshold": 1.5}, "'threshold' must be"),
    (b"this is not json", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    ("[1, 2]", "must be a JSON object"),
    (b"", "empty"),
    # Nuclio decodes a JSON body before the handler sees it: name what was sent, not "empty"
    ([{"image": "..."}], "must be a JSON object {\"image\": base64, \"threshold\": float}, got a list of 1"),
    (42, "got a number (42)"),
    (None, "got null"),
    (True, "got a boolean (true)"),
])
def test_bad_input_is_a_400_that_says_which(served, body, message):
    platform, _ = served
    status, reply, _ = call(platform, body)
    assert status == 400 and message in reply["error"], reply
    assert "Traceback" not in reply["error"]


def test_function_keeps_serving_after_bad_input_and_internal_errors(served, one_person):
    platform, _ = served
    call(platform, b"{")

    def broken_detector(context):
        service = context.user_data.service
        original = service.detector
        service.detector = lambda image, score=None: (_ for _ in ()).throw(RuntimeError("onnx died"))
        broken_detector.restore = lambda: setattr(service, "detector", original)
        return context

    status, reply, _ = call(platform, {"image": encode(bgr_to_pil(one_person[0]))}, broken_detector)
    broken_detector.restore()
    assert status == 500 and "onnx died" in reply["error"]
    status, shapes, _ = call(platform, {"image": encode(bgr_to_pil(one_person[0])), "threshold": 0})
    assert status == 200 and len(shapes) == 1


def test_promote_during_a_stream_switches_with_no_failed_request(served, trained, one_person):
    from concurrent.futures import ThreadPoolExecutor

    platform, registry = served
    old = registry.current().id
    new = copy_version(trained[1], registry)
    broken = copy_version(trained[1], registry)
    (broken.path / "checkpoint.pth").write_bytes(b"corrupt")
    body = {"image": encode(bgr_to_pil(one_person[0]), "JPEG")}
    call(platform, body)  # the handler context exists before the stream starts

    def stream(n):
        return [call(platform, body)[::2] for _ in range(n)]

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(stream, 6)
        second = pool.submit(stream, 6)
        registry.promote(new.id)
        replies = first.result() + second.result()
    replies += stream(2)
    assert all(status == 200 for status, _ in replies), replies
    versions = [headers["X-CALS-Model-Version"] for _, headers in replies]
    assert set(versions) <= {old, new.id} and versions[-1] == new.id

    registry.promote(broken.id)  # fails to load: logged, the previous model keeps serving
    status, _, headers = call(platform, body)
    assert status == 200 and headers["X-CALS-Model-Version"] == new.id
    registry.promote(old)  # and a loadable promote after that is picked up again
    assert call(platform, body)[2]["X-CALS-Model-Version"] == old


def _model_view(bbox_xywh, version, slack: float = 1.25) -> np.ndarray:
    """[x1, y1, x2, y2] of what the pose model sees of a person: the box grown by the crop's padding
    and widened to the model's aspect ratio (mmpose's GetBBoxCenterScale and TopdownAffine), then by
    `slack` for the detector's box being another than the label's. Top-down decoding places every point
    inside it, whatever the weights."""
    from mmengine.config import Config
    from mmpose.structures.bbox import bbox_xywh2cs

    w, h = Config.fromfile(str(version.path / "config.py")).codec.input_size
    centre, scale = bbox_xywh2cs(np.array(bbox_xywh, dtype=np.float32), padding=1.25)
    sw, sh = (scale[0], scale[0] * h / w) if scale[0] > scale[1] * w / h else (scale[1] * w / h, scale[1])
    half = np.array([sw, sh]) * slack / 2
    return np.concatenate([centre - half, centre + half])


def test_people_of_real_coco_images_are_found(served):
    """Real pixels, real detector: each large labelled person gets a skeleton placed on that person.

    The served model learnt on generated people only, so where exactly its points land on a photo is
    that model's luck (a skeleton's centre fell outside its person's box on another CPU). What the
    function guarantees is one skeleton per detected person, every point inside what the pose model saw
    of that person and in the image's own pixel frame (a crop, resized or transposed frame fails)."""
    coco = json.loads((REAL / "test_coco.json").read_text())
    platform, registry = served
    version = registry.current()
    for image in coco["images"]:
        status, shapes, _ = call(platform, {"image": _b64_file(REAL / image["file_name"]), "threshold": 0})
        assert status == 200, shapes
        skeletons = [skeleton_points(s)[0] for s in shapes]
        people = [a for a in coco["annotations"]
                  if a["image_id"] == image["id"] and a["bbox"][2] * a["bbox"][3] > 96 ** 2]
        assert len(skeletons) >= len(people), (image["file_name"], len(skeletons), len(people))
        for ann in people:
            x1, y1, x2, y2 = _model_view(ann["bbox"], version)
            placed = [((pts[:, 0] >= x1) & (pts[:, 0] <= x2) & (pts[:, 1] >= y1) & (pts[:, 1] <= y2)).all()
                      for pts in skeletons]
            assert any(placed), (image["file_name"], ann["bbox"], [x1, y1, x2, y2])
