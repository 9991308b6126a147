"""Validating a config reads only the light specs: no torch, transformers, peft or trl is imported for any
shipped example or any config the README and docs/ show (they take seconds to import; a typo is answered in a
fraction of one)."""
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {"model", "data", "method", "train", "output", "eval", "continual"}

PROBE = """
import sys
from tunelab.config.loader import is_sequence, load_config, load_sequence, validate
import yaml
for path in sys.argv[1:]:
    if path.endswith(".md.yaml"):
        validate(yaml.safe_load(open(path, encoding="utf-8")), path)
    else:
        (load_sequence if is_sequence(path) else load_config)(path)
print(sorted(m for m in ("torch", "transformers", "peft", "trl") if m in sys.modules))
"""


def documented_configs() -> list[dict]:
    """The YAML blocks of README.md and docs/*.md that are run configs (their keys are config sections)."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            raw = yaml.safe_load(block)
            if isinstance(raw, dict) and set(raw) <= SECTIONS and "data" in raw:
                found.append(raw)
    return found


def test_every_example_and_documented_config_validates_without_the_libraries(tmp_path):
    docs = documented_configs()
    assert docs, "the README shows a config"
    paths = [str(path) for path in sorted((ROOT / "examples").rglob("*.yaml"))]
    paths += [str(ROOT / "tests" / "assets" / "foreign" / name) for name in (  # translated, then validated
        "llamafactory/train_lora/qwen3_lora_sft.yaml", "llamafactory/train_lora/qwen3_lora_dpo.yaml",
        "axolotl/llama3_lora.yml", "axolotl/llama3_qlora.yml")]
    for number, raw in enumerate(docs):
        path = tmp_path / f"doc{number}.md.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", PROBE, *paths], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
