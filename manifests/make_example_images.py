"""Draw the example first-frame images (committed; rerun to regenerate them).

They cover the shapes the API accepts: landscape, portrait, square, and the 2.5:1
aspect-ratio edge, as PNG and JPEG, at the 300 px minimum side and above; and two
pictures as phones leave them, which kling-batch converts before sending: an iPhone
HEIC, and a JPEG stored sideways whose EXIF says to turn it.
"""

from pathlib import Path

import pillow_heif
from PIL import Image, ImageDraw

HERE = Path(__file__).parent / "images"
SHAPES = {
    "cat.png": (640, 480, "#f4a261", "#264653"),
    "lighthouse.jpg": (480, 854, "#8ecae6", "#023047"),
    "flower.png": (512, 512, "#ffb4c2", "#2a9d8f"),
    "skyline.jpg": (750, 300, "#ffd166", "#073b4c"),
}


def draw(width: int, height: int, sky: str, ground: str) -> Image.Image:
    image = Image.new("RGB", (width, height), sky)
    pen = ImageDraw.Draw(image)
    pen.rectangle([0, height * 2 // 3, width, height], fill=ground)
    radius = min(width, height) // 6
    pen.ellipse(
        [width // 2 - radius, height // 3 - radius, width // 2 + radius, height // 3 + radius],
        fill="white",
    )
    return image


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    for name, (width, height, sky, ground) in SHAPES.items():
        draw(width, height, sky, ground).save(HERE / name, quality=85)
        print(HERE / name)
    pillow_heif.register_heif_opener()
    draw(900, 1200, "#cdb4db", "#3d405b").save(HERE / "phone.heic", quality=80)
    turn = Image.Exif()
    turn[0x0112] = 6  # "turn 90 degrees clockwise to show": shown portrait
    sideways = draw(720, 1000, "#a8dadc", "#1d3557").transpose(Image.Transpose.ROTATE_90)
    sideways.save(HERE / "phone-sideways.jpg", quality=85, exif=turn.tobytes())
    print(HERE / "phone.heic", HERE / "phone-sideways.jpg", sep="\n")
