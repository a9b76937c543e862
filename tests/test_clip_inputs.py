"""The CLIP model inputs made without torch (issue 18) are open_clip's own, exactly: the image
transform against open_clip's evaluation transform (difference 0) on awkward sizes and on every
resize mode, the tokenizer against open_clip's tokenizer (equal ids) on awkward texts; and neither
imports torch. Random weights only (no network): the transform does not depend on them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from pipeline.embedding.backends.clip_preprocess import ImageTransform
from pipeline.embedding.backends.clip_tokenizer import _tokenizer, numpy_tokenizer

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

# (width, height): smaller and larger than the model's size, odd, square, and very long or tall.
SIZES = [
    (1, 1),
    (2, 3),
    (7, 7),
    (223, 225),
    (224, 224),
    (300, 224),
    (224, 300),
    (384, 384),
    (640, 480),
    (480, 640),
    (1023, 767),
    (1000, 37),
    (37, 1000),
    (9, 600),
]
TEXTS = [
    "",
    "a photo of a cat",
    "A PHOTO OF A CAT ON A MAT",
    "café naïve Ünïcödé 東京の写真 фото Москвы",
    "🐈‍⬛ 👍🏽 🇫🇷 emoji!!",
    "&amp;lt;b&amp;gt; &quot;quoted&quot; &#39;x&#39; &eacute;t&eacute;",
    "tabs\tand\nnewlines\r\n and\u00a0no-break\u2003em\u3000ideographic  spaces",
    "   leading and trailing   ",
    " ".join(["word"] * 200),  # truncated: still ends with the end token
    "x" * 500,
    "it's we're they've I'm you'll he'd",
    "<start_of_text> <END_OF_TEXT> special tokens typed",
    "under_score snake_case, punct!?; (yes) #tag @user",
    "Ã©tÃ© mojibake",
    "12345 3.14 1e10",
    "\x00\x01 control characters",
]


def images() -> list[Image.Image]:
    # Noise: every pixel differs from its neighbours, the hardest case for interpolation.
    rng = np.random.default_rng(18)
    return [
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for width, height in SIZES
    ]


def assert_same_as_open_clip(transform: ImageTransform, reference) -> None:
    for image in images():
        expected = reference(image).numpy()
        ours = transform(image)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous, image.size
        assert ours.shape == expected.shape, image.size
        assert np.abs(ours - expected).max() == 0, image.size


@pytest.mark.parametrize(
    "options",
    [
        {},  # ViT-B-32's own: 224, shortest side, bicubic, OpenAI mean and std
        # SigLIP's and DFN's weights' preprocessing, at 384 px
        {
            "force_image_size": 384,
            "image_resize_mode": "squash",
            "image_interpolation": "bilinear",
            "image_mean": (0.5, 0.5, 0.5),
            "image_std": (0.5, 0.5, 0.5),
        },
        {"force_image_size": 256, "image_resize_mode": "longest"},  # padded with the fill colour
    ],
    ids=["ViT-B-32", "384-squash-bilinear", "256-longest"],
)
def test_the_transform_of_a_model_equals_open_clips(options):
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=None, **options
    )
    transform = ImageTransform.from_open_clip(model)
    assert transform.size == (options.get("force_image_size", 224),) * 2
    assert_same_as_open_clip(transform, preprocess)


@pytest.mark.parametrize(
    "config",
    [
        # A non-square target: open_clip resizes the short side with bicubic, whatever the config.
        {"size": (224, 320), "interpolation": "bilinear"},
        {"size": (320, 224), "resize_mode": "longest", "fill_color": 128},
        {"size": (200, 240), "resize_mode": "squash"},
        {"size": 336, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    ],
    ids=["224x320-shortest", "320x224-longest-grey", "200x240-squash", "336-imagenet"],
)
def test_other_preprocess_configs_equal_open_clips(config):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    reference = image_transform_v2(PreprocessCfg(**config), is_train=False)
    assert_same_as_open_clip(ImageTransform.from_config(config), reference)


def test_an_image_too_thin_to_resize_fails_as_in_open_clip():
    config = {"size": 224, "resize_mode": "longest"}
    from open_clip.transform import PreprocessCfg, image_transform_v2

    thin = Image.new("RGB", (1, 2000))  # its width would round to 0 pixels
    with pytest.raises(ValueError):
        image_transform_v2(PreprocessCfg(**config), is_train=False)(thin)
    with pytest.raises(ValueError, match="resizes to 0x224"):
        ImageTransform.from_config(config)(thin)


def test_the_config_round_trips_through_json():
    transform = ImageTransform.from_config(
        {"size": [320, 224], "mean": 0.5, "std": [0.25, 0.5, 0.75], "interpolation": "random"}
    )
    assert transform.mean == (0.5, 0.5, 0.5) and transform.interpolation == "bicubic"
    assert ImageTransform.from_config(json.loads(json.dumps(transform.to_config()))) == transform


def test_only_rgb_is_taken():
    with pytest.raises(ValueError, match="RGB"):
        ImageTransform(size=(224, 224))(Image.new("L", (10, 10)))


@pytest.mark.parametrize("model", ["ViT-B-32", "coca_ViT-B-32", "PE-Core-B-16"])
def test_the_tokenizer_equals_open_clips(model):
    # coca: 76 tokens; PE-Core: 32 (long texts truncated sooner)
    ours = numpy_tokenizer(model)
    assert ours is not None
    expected = open_clip.get_tokenizer(model)(TEXTS).numpy()
    tokens = ours(TEXTS)
    assert tokens.dtype == np.int64 and tokens.shape == expected.shape
    assert np.array_equal(tokens, expected)
    assert ours(TEXTS[:1]).shape == (1, expected.shape[1])


@pytest.mark.parametrize("clean", ["whitespace", "canonicalize"])
def test_the_other_text_cleanings_equal_open_clips(clean):
    # No config of open_clip 3.3 uses them with this tokenizer, but a config may say so.
    from open_clip.tokenizer import SimpleTokenizer

    expected = SimpleTokenizer(context_length=77, clean=clean)(TEXTS).numpy()
    assert np.array_equal(_tokenizer(77, clean)(TEXTS), expected)


@pytest.mark.parametrize(
    "model",
    [
        "ViT-B-16-SigLIP",  # SigLIP's own tokenizer
        "ViT-L-14-CLIPA",  # a Hugging Face tokenizer
        "xlm-roberta-base-ViT-B-32",
        "hf-hub:timm/ViT-B-16-SigLIP",  # a config found elsewhere
        "no-such-model",
    ],
)
def test_other_tokenizers_are_left_to_open_clip(model):
    assert numpy_tokenizer(model) is None


def test_neither_imports_torch():
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from PIL import Image
        from pipeline.embedding.backends.clip_preprocess import ImageTransform
        from pipeline.embedding.backends.clip_tokenizer import numpy_tokenizer

        pixels = ImageTransform.from_config({"size": 224})(Image.new("RGB", (640, 480)))
        tokens = numpy_tokenizer("ViT-B-32")(["a photo of a cat"])
        assert pixels.shape == (3, 224, 224) and tokens.shape == (1, 77)
        heavy = sorted({"torch", "torchvision", "open_clip"} & set(sys.modules))
        assert not heavy, heavy
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
