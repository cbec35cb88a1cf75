"""Synthetic back photos from either body source, and the ``mskmorph phantom back`` command.

The two sources are ``phantom`` (a parametric height field of our own) and ``anny_phantom``
(MakeHuman bodies of the optional ``anny`` package rendered by VTK); this module is the one place
that chooses between them, so neither source imports the other.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import phantom

BODIES = ("parametric", "anny")


def make_photo(body: str, seed, width: int, height: int, cameras: str = "face-on", scene: str = "plain"):
    """One synthetic photo from either body source (``anny`` needs the optional anny package);
    ``cameras``: "face-on" or "varied" (``phantom.CAMERAS``); ``scene``: "plain" or "varied"
    (lights, skin tones, body hair, shadows, clutter: ``phantom.shade``)."""
    if body == "anny":
        from .anny_phantom import make_anny_back_photo

        return make_anny_back_photo(seed, width=width, height=height, cameras=cameras, scene=scene)
    if body != "parametric":
        raise ValueError(f"unknown body source {body!r}; one of {BODIES}")
    return phantom.make_back_photo(seed, width=width, height=height, cameras=cameras, scene=scene)



# --------------------------------------------------------------------------------------------
# command line

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=int, default=8, help="number of photos (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=384, help="photo width in pixels (default 384)")
    parser.add_argument("--height", type=int, default=512, help="photo height in pixels (default 512)")
    parser.add_argument("--body", choices=("parametric", "anny"), default="parametric",
                        help="body source: the parametric height field (default) or the Anny body model "
                             "(optional package: pip install anny==0.6.2)")
    parser.add_argument("--cameras", choices=tuple(phantom.CAMERAS), default="face-on",
                        help="face-on (default: the cameras the network was trained on) or varied (turned "
                             "+-15 deg sideways and up/down, +-5 deg about the axis, nearer/farther, the person "
                             "off-centre or cut by the frame)")
    parser.add_argument("--scene", choices=phantom.SCENES, default="plain",
                        help="plain (default: as in training) or varied (1-3 coloured lights, cast shadows, skin "
                             "tones along the whole range, body hair, clutter behind the person)")


def run(args) -> int:
    make = phantom.make_back_photo
    if getattr(args, "body", "parametric") == "anny":
        try:
            from .anny_phantom import anny_model, make_anny_back_photo

            anny_model()
        except ImportError as e:
            import sys

            print(f"mskmorph phantom back --body anny needs the optional package anny: "
                  f"pip install anny==0.6.2 ({e})", file=sys.stderr)
            return 2
        make = make_anny_back_photo
    rows = []
    for i in range(args.n):
        photo = make(phantom.photo_seed(args.seed, i), args.width, args.height,
                     cameras=getattr(args, "cameras", "face-on"), scene=getattr(args, "scene", "plain"))
        stem = f"back_{args.seed:04d}_{i:04d}"
        phantom.write_photo(photo, args.out, stem)
        m = photo.measures
        rows.append(stem)
        print(f"{stem}.png: trunk length {m['trunk_length']:.0f} mm, lateral deviation max "
              f"{m['lateral_deviation_max']:.1f} mm, surface rotation max {m['surface_rotation_max_deg']:.1f} deg")
    print(f"{len(rows)} photos with depth (mm, 16-bit PNG), mask and ground truth JSON in {args.out}")
    return 0
