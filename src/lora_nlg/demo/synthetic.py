"""A small E2E-style data-to-text set that the project generates itself, so the demo runs without any download.

Restaurant attribute lists (the E2E attributes and values) are rendered into tokenised English by several
templates; every reference mentions every attribute of its input. Output is the LoRA repository's E2E text
format (`MR||reference`, one reference per line), which `make data DATASET=e2e RAW_DIR=...` reads as is.

    python -m lora_nlg.synthetic OUT_DIR [--seed 0] [--train 600] [--valid 60] [--test 60]
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from lora_nlg.atomic import WriteError, atomic_file

NAMES = ["The Golden Fork", "Blue Lantern", "The Olive Tree", "Red Kettle", "The Silver Spoon", "Green Door",
         "The Copper Pot", "Maple House", "The Rusty Anchor", "Little Italy", "The Old Mill", "Sunrise Cafe",
         "The Brass Bell", "Willow Inn", "The Hungry Fox", "Harbour Light", "The Black Sheep", "Cherry Garden",
         "The Crown", "Riverside Grill", "Stone Bridge", "The White Horse", "Lemon Leaf", "The Twisted Oak"]
NEAR = ["Central Station", "the Town Hall", "Market Square", "the Cathedral", "City Museum", "the Old Bridge",
        "Park Lane", "the Art Gallery", "Kings Theatre", "the Library"]
VALUES = {
    "Type": ["coffee shop", "pub", "restaurant"],
    "food": ["Chinese", "English", "Fast food", "French", "Indian", "Italian", "Japanese"],
    "price": ["cheap", "moderate", "high", "less than £ 20", "£ 20 - 25", "more than £ 30"],
    "customer rating": ["low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"],
    "area": ["city centre", "riverside"],
    "family friendly": ["yes", "no"],
}
ORDER = ["name", "Type", "food", "price", "customer rating", "area", "family friendly", "near"]


def sample_mr(rng: random.Random) -> dict[str, str]:
    mr = {"name": rng.choice(NAMES)}
    for key in ORDER[1:]:
        if rng.random() < 0.55:
            mr[key] = rng.choice(NEAR) if key == "near" else rng.choice(VALUES[key])
    if len(mr) == 1:
        mr["Type"] = rng.choice(VALUES["Type"])
    return mr


def serialise(mr: dict[str, str]) -> str:
    return " | ".join(f"{k} : {mr[k]}" for k in ORDER if k in mr)


def _price_phrase(price: str, variant: int) -> str:
    if price in ("cheap", "moderate", "high"):
        return ["with " + price + " prices", "that is " + price + "ly priced" if price != "cheap" else "that is cheap",
                "with a " + price + " price range"][variant % 3]
    return ["with prices " + price, "where meals cost " + price, "with a price range of " + price][variant % 3]


def _rating_phrase(rating: str, variant: int) -> str:
    return ["with a " + rating + " customer rating", "rated " + rating + " by customers",
            "that customers rate " + rating][variant % 3]


def render(mr: dict[str, str], variant: int) -> str:
    """One tokenised reference that mentions every attribute of `mr`."""
    kind = mr.get("Type", "place")
    food = mr.get("food")
    food_adj = "fast food" if food == "Fast food" else food            # "a fast food pub", "an Italian pub"
    food_noun = "fast food" if food == "Fast food" else f"{food} food"  # "serving fast food", "serving Italian food"
    head = f"{food_adj} {kind}" if food and variant % 2 else kind
    extras = []
    if food and not variant % 2:
        extras.append(["serving ", "that serves ", "offering "][variant % 3] + food_noun)
    if "price" in mr:
        extras.append(_price_phrase(mr["price"], variant))
    if "customer rating" in mr:
        extras.append(_rating_phrase(mr["customer rating"], variant))
    where = []
    if "area" in mr:
        where.append(["in the " + mr["area"], "located in the " + mr["area"], "in the " + mr["area"] + " area"][variant % 3])
    if "near" in mr:
        where.append(["near " + mr["near"], "close to " + mr["near"], "not far from " + mr["near"]][variant % 3])
    family = None
    if "family friendly" in mr:
        yes = mr["family friendly"] == "yes"
        family = (["It is family - friendly .", "Children are welcome .", "It is kid friendly ."][variant % 3] if yes else
                  ["It is not family - friendly .", "It is not suitable for children .", "It is adults only ."][variant % 3])
    body = " , ".join(extras + where)
    if variant % 3 == 0:
        sentence = f"{mr['name']} is a {head}" + (f" {body}" if body else "") + " ."
    elif variant % 3 == 1:
        sentence = f"There is a {head} called {mr['name']}" + (f" {body}" if body else "") + " ."
    else:
        sentence = f"{mr['name']} , a {head}" + (f" {body}" if body else "") + " , is worth a visit ."
    return f"{sentence} {family}" if family else sentence


def generate_split(rng: random.Random, n_inputs: int, refs_per_input: tuple[int, int] = (2, 4)) -> list[str]:
    lines = []
    seen: set[str] = set()
    while len(seen) < n_inputs:
        mr = sample_mr(rng)
        key = serialise(mr)
        if key in seen:
            continue
        seen.add(key)
        texts = dict.fromkeys(render(mr, v) for v in rng.sample(range(6), rng.randint(*refs_per_input)))
        lines.extend(f"{key}||{text}" for text in texts)
    return lines


def write_dataset(out_dir: str | Path, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Write `<out_dir>/e2e/{train,valid,test}.txt`; returns lines per split. Deterministic from `seed`."""
    sizes = sizes or {"train": 600, "valid": 60, "test": 60}
    rng = random.Random(seed)
    counts = {}
    for split, n in sizes.items():
        lines = generate_split(rng, n)
        with atomic_file(Path(out_dir) / "e2e" / f"{split}.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        counts[split] = len(lines)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    for split, n in (("train", 600), ("valid", 60), ("test", 60)):
        parser.add_argument(f"--{split}", type=int, default=n, help=f"number of distinct inputs (default {n})")
    args = parser.parse_args(argv)
    try:
        counts = write_dataset(args.out_dir, args.seed, {"train": args.train, "valid": args.valid, "test": args.test})
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"synthetic E2E-style data in {args.out_dir}/e2e: " + ", ".join(f"{k} {v} lines" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
