"""``birdie-jax export`` and ``birdie-jax import`` (parsers and handlers)."""


def add_convert_parsers(sub) -> None:
    from birdie_jax.convert.export import FORMATS
    from birdie_jax.convert.import_ import SOURCES

    e = sub.add_parser("export", help="write a run's model as a safetensors or Hugging Face folder")
    e.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ subfolder")
    e.add_argument("--format", choices=FORMATS, default="safetensors",
                   help="safetensors: any architecture (birdie_jax names); hf: Hawk / Griffin → "
                   "RecurrentGemma, Mamba-2 → Mamba2 (transformers from_pretrained)")
    e.add_argument("--out", required=True, help="folder to create (must not exist)")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")

    i = sub.add_parser("import", help="turn a safetensors or Hugging Face folder into a run folder")
    i.add_argument("--from", dest="source", choices=SOURCES, default="auto", help="kind of folder (default: auto)")
    i.add_argument("folder", help="folder holding config.json and *.safetensors")
    i.add_argument("--out", required=True, help="run folder to create (must not exist)")
    i.add_argument("--tokenizer", default=None, help="tokenizer instead of the folder's (byte, *.json, *.model)")
    i.add_argument("--num-sentinels", type=int, default=None, help="sentinel pool size (default: the folder's, "
                   "else 100)")


def run_export(args) -> int:
    from birdie_jax.convert.export import export

    out = export(args.checkpoint, args.out, args.format, args.step)
    print(f"wrote {args.format} folder {out}")
    return 0


def run_import(args) -> int:
    from birdie_jax.convert.import_ import import_checkpoint

    out = import_checkpoint(args.folder, args.out, args.source, tokenizer=args.tokenizer,
                            num_sentinels=args.num_sentinels)
    print(f"wrote run folder {out} (use it with generate --checkpoint, or train init_from={out})")
    return 0
