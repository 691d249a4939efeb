"""Command line: `python -m ppl demo`."""

import argparse

from ppl import demo


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ppl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="fit the bundled example models with NUTS")
    d.add_argument("--num-samples", type=int, default=1000)
    d.add_argument("--num-chains", type=int, default=4)
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo.main(num_samples=args.num_samples, num_chains=args.num_chains, seed=args.seed)


if __name__ == "__main__":
    main()
