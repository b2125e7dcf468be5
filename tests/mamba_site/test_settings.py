import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def settings_env_names():
    source = (ROOT / "mamba_site" / "settings.py").read_text()
    names = {f"MAMBA_{name}" for name in re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', source)}
    return names | set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', source))


def test_env_example_lists_every_setting():
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert settings_env_names() - listed == set()
    assert listed - settings_env_names() == set()
