"""`cals generate`, `cals import-coco`, `cals schema`: datasets in the schema's layout, and the schema."""
from __future__ import annotations

from cals.cli.common import emit, schema_of
from cals.errors import CalsError


def add_parsers(sub) -> None:
    g = sub.add_parser("generate", help="write a synthetic COCO keypoints dataset")
    g.add_argument("--out", required=True, help="output folder (annotations.json + images/)")
    g.add_argument("--images", type=int, required=True, help="number of images")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mix", help="pose-family mix, e.g. upright=0.7,bending=0.1,sitting=0.1,lying=0.05,twisting=0.05")
    g.add_argument("--size", default="320x240", help="image size WxH (default 320x240)")
    g.add_argument("--max-people", type=int, default=3)
    g.add_argument("--workers", type=int, help="processes (default: all cores)")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("import-coco", help="a COCO keypoints dataset (e.g. COCO-17 people) in the schema's layout: "
                                           "points matched by name, the rest unlabelled")
    i.add_argument("--annotations", required=True, help="COCO keypoints JSON (e.g. person_keypoints_train2017.json)")
    i.add_argument("--images", required=True, help="the folder its file_name entries are relative to")
    i.add_argument("--out", required=True, help="output dataset folder (annotations.json + images/)")
    i.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    i.set_defaults(func=cmd_import_coco)

    s = sub.add_parser("schema", help="show the keypoint schema")
    s.add_argument("--cvat-spec", action="store_true", help="CVAT label spec (function.yaml / task labels)")
    s.add_argument("--coco", action="store_true", help="the COCO categories entry")
    s.set_defaults(func=cmd_schema)


def cmd_generate(args) -> None:
    from cals.synth import generate_dataset, parse_mix

    mix = parse_mix(args.mix) if args.mix else None
    w, h = _size(args.size)
    path = generate_dataset(args.out, args.images, seed=args.seed, mix=mix, schema=schema_of(args),
                            image_size=(w, h), max_people=args.max_people, workers=args.workers)
    print(path)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CalsError(f"--size must look like 320x240, got {text!r}") from None
    return w, h


def cmd_import_coco(args) -> None:
    from cals.data.coco_import import import_coco

    print(import_coco(args.annotations, args.images, args.out, schema_of(args), link=not args.copy))


def cmd_schema(args) -> None:
    schema = schema_of(args)
    if args.cvat_spec:
        emit([schema.cvat_label()])
    elif args.coco:
        emit(schema.coco_category())
    else:
        emit({"source": schema.source, "label": schema.label, "keypoints": schema.names,
              "groups": {g: [schema.names[i] for i in idx] for g, idx in schema.groups.items()}})
