"""The SleepVLM request layout: labels, order, data URIs and the edge policy."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from sleepvlm_ws.core.model.request import (EDGE_FLAG, EpochImages, blank_epoch_png, build_messages,
                                            epoch_has_signal, request_images)
from sleepvlm_ws.core.signals.montage import ROLES
from sleepvlm_ws.core.signals.render import PAD_S, EpochWindow, render_png

FS = 100.0


def _window(fill=None, *, before_s: float = PAD_S, after_s: float = PAD_S, roles=ROLES, seed=0):
    """A window of ``roles`` with noise (or ``fill`` everywhere); other roles missing."""
    rng = np.random.default_rng(seed)
    n = int(round((before_s + 30.0 + after_s) * FS))
    signals = {}
    for role in ROLES:
        if role in roles:
            x = rng.normal(0, 20, n) if fill is None else np.full(n, fill, dtype=float)
            signals[role] = (x, FS)
        else:
            signals[role] = None
    return EpochWindow(signals, pad_s=PAD_S, pad_before_s=before_s, pad_after_s=after_s)


@pytest.fixture(scope="module")
def pngs():
    return [render_png(_window(seed=s)) for s in range(3)]


def _decode(part: dict) -> bytes:
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.split(",", 1)[1], validate=True)


def test_layout_is_exactly_the_training_layout(pngs):
    prev, target, nxt = pngs
    messages = build_messages("THE RULES", EpochImages(prev, target, nxt))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == "THE RULES"
    content = messages[1]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"] * 3
    labels = [part["text"] for part in content[0::2]]
    assert labels == ["Preceding epoch N\u2011" "1: ", "**Target epoch N**: ", "Subsequent epoch N+1: "]
    # the first label carries the non-breaking hyphen, never an ASCII hyphen-minus
    assert labels[0].encode("utf-8") == b"Preceding epoch N\xe2\x80\x911: "
    assert "-" not in labels[0]
    assert [_decode(part) for part in content[1::2]] == [prev, target, nxt]
    assert not EpochImages(prev, target, nxt).edge


def test_images_are_data_uris_never_urls(pngs):
    content = build_messages("p", EpochImages(*pngs))[1]["content"]
    for part in content[1::2]:
        assert set(part) == {"type", "image_url"}
        assert set(part["image_url"]) == {"url"}
        assert not part["image_url"]["url"].startswith(("http:", "https:", "file:"))


def test_missing_neighbours_become_the_blank_epoch_and_mark_the_request_edge(pngs):
    blank = blank_epoch_png()
    blank_pixels = np.asarray(Image.open(io.BytesIO(blank)).convert("RGB"))
    assert blank_pixels.shape == (224, 448, 3)
    assert 0 < blank_pixels.max() <= 0x40        # the grey grid, nothing brighter
    assert (blank_pixels[10:25, 2:12] == 0).all()   # black between grid lines
    assert (blank_pixels[..., 0] == blank_pixels[..., 2]).all()   # grey only: no trace colour

    first = request_images(None, pngs[1], pngs[2])      # first epoch of a recording
    last = request_images(pngs[0], pngs[1], None)       # last epoch
    for images, sent in ((first, [blank, pngs[1], pngs[2]]), (last, [pngs[0], pngs[1], blank])):
        assert images.edge
        content = build_messages("p", images)[1]["content"]
        assert [_decode(part) for part in content[1::2]] == sent
    assert EDGE_FLAG == "edge_epoch"


def test_neighbour_inside_a_gap_counts_as_missing(pngs):
    gap = render_png(_window(np.nan))            # the neighbour's signal entirely missing
    assert gap == blank_epoch_png()
    assert EpochImages(gap, pngs[1], pngs[2]).edge
    # a neighbour with only some roles recorded is not a gap
    partial = render_png(_window(roles=("C4-M1",)))
    assert not EpochImages(partial, pngs[1], partial).edge


def test_target_must_be_png_bytes(pngs):
    with pytest.raises(ValueError, match="target"):
        EpochImages(pngs[0], None, pngs[2])      # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prev"):
        EpochImages(b"GIF89a....", pngs[1], pngs[2])


def test_epoch_has_signal_looks_at_the_epoch_only():
    assert epoch_has_signal(_window())
    assert not epoch_has_signal(_window(np.nan))
    assert not epoch_has_signal(_window(roles=()))
    # signal only in the padding around the epoch: the epoch itself has none
    w = _window(np.nan)
    x = w.signals["C4-M1"][0].copy()
    x[: int(PAD_S * FS)] = 1.0
    x[-int(PAD_S * FS):] = 1.0
    padded_only = EpochWindow({**w.signals, "C4-M1": (x, FS)}, pad_s=PAD_S)
    assert not epoch_has_signal(padded_only)
    # one finite sample inside the epoch is enough
    x[int(PAD_S * FS) + 1500] = 3.0
    assert epoch_has_signal(EpochWindow({**w.signals, "C4-M1": (x, FS)}, pad_s=PAD_S))
    # the first epoch of a recording has no context before it
    assert epoch_has_signal(_window(before_s=0.0))
