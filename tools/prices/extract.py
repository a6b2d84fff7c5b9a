#!/usr/bin/env python3
"""Regenerates src/metering/prices.json from the model cost map that the `litellm`
PyPI package ships (settled: initial prices come from it, its version recorded).

Usage: python3 tools/prices/extract.py [LITELLM_VERSION]
Downloads the litellm wheel with pip (PyPI only), reads
litellm/model_prices_and_context_window_backup.json, and keeps the models of the
default ladder. Prices become integer nano-dollars per million tokens, exactly:
dollars-per-token x 1e15, rounded to the nearest integer.
"""
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

# (provider, model as vaultline names it, key in litellm's map)
MODELS = [
    ("deepseek", "deepseek-chat", "deepseek/deepseek-chat"),
    ("gemini", "gemini-2.5-flash", "gemini/gemini-2.5-flash"),
    ("gemini", "gemini-3-flash-preview", "gemini/gemini-3-flash-preview"),
    ("gemini", "gemini-2.5-pro", "gemini-2.5-pro"),
    ("gemini", "gemini-3.1-pro-preview", "gemini/gemini-3.1-pro-preview"),
    ("openai", "gpt-5-codex", "gpt-5-codex"),
    ("openai", "gpt-5.3-codex", "gpt-5.3-codex"),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-6", "claude-sonnet-4-6"),
    ("anthropic", "claude-opus-4-6", "claude-opus-4-6"),
]


def nanos_per_mtok(per_token):
    if per_token is None:
        return None
    return int(round(float(per_token) * 1e15))


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else None
    spec = f"litellm=={version}" if version else "litellm"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec], check=True)
        wheel = next(pathlib.Path(tmp).glob("litellm-*.whl"))
        got_version = wheel.name.split("-")[1]
        with zipfile.ZipFile(wheel) as z:
            cost_map = json.loads(z.read("litellm/model_prices_and_context_window_backup.json"))
    rows = []
    for provider, model, key in MODELS:
        m = cost_map[key]
        rows.append({
            "provider": provider,
            "model": model,
            "input": nanos_per_mtok(m.get("input_cost_per_token")),
            "output": nanos_per_mtok(m.get("output_cost_per_token")),
            "cache_read": nanos_per_mtok(m.get("cache_read_input_token_cost")),
            "cache_write": nanos_per_mtok(m.get("cache_creation_input_token_cost")) or None,
        })
    doc = {
        "source": f"litellm {got_version} model_prices_and_context_window_backup.json",
        "effective_from": "2026-11-24T00:00:00.000Z",
        "unit": "nano-dollars per million tokens",
        "prices": rows,
    }
    out = pathlib.Path(__file__).resolve().parents[2] / "src" / "metering" / "prices.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out} from litellm {got_version}: {len(rows)} models")


if __name__ == "__main__":
    main()
