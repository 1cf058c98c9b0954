"""Data that fits the PP-OCR models shipped in rapidocr-onnxruntime: rendered text lines for
the recognizer (with their text) and the 0/180 classifier (with the turn), rendered page
crops for the DB text detector.

Text is real English from standard-library docstrings (tests/document_pages.py), drawn with
Pillow's bundled font. Preprocessing is rapidocr's own (ch_ppocr_*/): height to the model's
line height keeping the aspect ratio, right-padded with zeros, (x/255 - 0.5) / 0.5, CHW.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.document_pages import _WORDS, render_page

REC_SHAPE = (3, 48, 320)  # rapidocr's rec_img_shape
CLS_SHAPE = (3, 48, 192)  # rapidocr's cls_image_shape
DETECT_SIZE = (320, 320)  # height, width: any multiple of 32 runs


def _normalize(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return ((pixels - 0.5) / 0.5).transpose(2, 0, 1)


def render_line(text: str, seed: int) -> Image.Image:
    """One line of dark text on a light background, cropped to the ink with a small margin."""
    rng = random.Random(seed)
    font = ImageFont.load_default(size=rng.randint(28, 40))
    left, top, right, bottom = font.getbbox(text)
    margin = rng.randint(4, 10)
    size = (right - left + 2 * margin, bottom - top + 2 * margin)
    line = Image.new("RGB", size, (rng.randint(225, 255),) * 3)
    ImageDraw.Draw(line).text(
        (margin - left, margin - top), text, fill=(rng.randint(0, 50),) * 3, font=font
    )
    return line


def line_input(line: Image.Image, shape: tuple[int, int, int]) -> np.ndarray:
    """rapidocr's resize_norm_img: height to shape[1], width by aspect up to shape[2], padded."""
    _, height, width = shape
    resized_width = min(width, math.ceil(height * line.width / line.height))
    resized = line.resize((resized_width, height), Image.Resampling.BILINEAR)
    padded = np.zeros(shape, dtype=np.float32)
    padded[:, :, :resized_width] = _normalize(resized)
    return padded


def line_texts(count: int, seed: int) -> list[str]:
    """Runs of 2-4 words short enough for a 320-pixel-wide line at height 48."""
    rng = random.Random(seed)
    texts = []
    while len(texts) < count:
        start = rng.randrange(len(_WORDS) - 4)
        text = " ".join(_WORDS[start : start + rng.randint(2, 4)])
        if 6 <= len(text) <= 24 and text.isascii() and text.isprintable():
            texts.append(text)
    return texts


def text_lines(count: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Recognizer input (N x 3 x 48 x 320) and the text each line shows."""
    texts = line_texts(count, seed)
    lines = [render_line(text, seed * 10_007 + i) for i, text in enumerate(texts)]
    return np.stack([line_input(line, REC_SHAPE) for line in lines]), texts


def turned_lines(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Classifier input (N x 3 x 48 x 192) and its class: 0 upright, 1 turned 180 degrees."""
    texts = line_texts(count, seed)
    xs, ys = [], []
    for i, text in enumerate(texts):
        label = i % 2
        line = render_line(text, seed * 10_007 + i).rotate(180 * label)
        xs.append(line_input(line, CLS_SHAPE))
        ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def page_crops(count: int, seed: int) -> np.ndarray:
    """Detector input (N x 3 x 320 x 320): the top-left part of rendered pages at half scale."""
    height, width = DETECT_SIZE
    crops = []
    for i in range(count):
        page = render_page(seed * 100_003 + i)
        page = page.resize((page.width // 2, page.height // 2), Image.Resampling.BILINEAR)
        crops.append(_normalize(page.crop((0, 0, width, height))))
    return np.stack(crops)


def text_region_iou(reference: np.ndarray, other: np.ndarray, threshold: float = 0.3) -> float:
    """The detector's own measure against the original: intersection over union of the text
    regions its probability maps mark (rapidocr binarizes at 0.3 before drawing boxes)."""
    a, b = reference > threshold, other > threshold
    return float((a & b).sum() / max((a | b).sum(), 1))


def ctc_greedy(probabilities: np.ndarray, characters: list[str]) -> list[str]:
    """rapidocr's decode: best class per step, repeats merged, blank (0) dropped; the
    dictionary is the model's 'character' metadata with a space appended."""
    table = ["", *characters, " "]
    texts = []
    for best in probabilities.argmax(axis=-1):
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        texts.append("".join(table[i] for i in best[keep & (best != 0)]))
    return texts


def character_accuracy(predicted: list[str], truth: list[str]) -> float:
    """1 - (edit distance / characters), summed over lines: the recognizer's own measure."""
    errors = sum(_edit_distance(p, t) for p, t in zip(predicted, truth, strict=True))
    return 1.0 - errors / sum(len(t) for t in truth)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]
