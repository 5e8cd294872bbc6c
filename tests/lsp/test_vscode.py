"""The VS Code extension in ``editors/vscode``: its manifest contributes exactly the
settings the server and the extension read, and ``extension.js`` is valid JavaScript
that sends them in the shapes the server accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from spawn_db.lsp.server import (
    PREVIEW_COMMAND,
    SETTINGS_SECTION,
    VARIABLES_SETTING,
    variables_setting,
)

FOLDER = Path(__file__).parents[2] / "editors" / "vscode"


def manifest() -> dict[str, object]:
    found = json.loads((FOLDER / "package.json").read_text(encoding="utf-8"))
    assert isinstance(found, dict)
    return found


def extension() -> str:
    return (FOLDER / "extension.js").read_text(encoding="utf-8")


def test_manifest_starts_the_extension_with_the_language_client() -> None:
    found = manifest()
    assert found["main"] == "./extension.js"
    assert "vscode-languageclient" in found["dependencies"]  # type: ignore[operator]
    assert found["activationEvents"] == ["workspaceContains:**/spawn.toml"]
    assert "require(\"vscode-languageclient/node\")" in extension()


def test_contributed_settings_are_the_ones_read() -> None:
    properties = manifest()["contributes"]["configuration"]["properties"]  # type: ignore[index]
    assert sorted(properties) == ["spawn.path", "spawn.variables"]
    assert f"{SETTINGS_SECTION}.{VARIABLES_SETTING}" == "spawn.variables"
    assert properties["spawn.path"]["default"] == "spawn"
    assert properties["spawn.variables"]["default"] == ""
    source = extension()
    assert 'getConfiguration("spawn")' in source
    assert re.search(r'settings\.get\("path"\)', source)
    assert re.search(r'settings\.get\("variables"\)', source)
    assert 'args: ["lsp"]' in source
    # What the client sends: initializationOptions {spawn: {variables}} and, for
    # configurationSection "spawn", didChangeConfiguration settings {spawn: {...}}.
    assert "initializationOptions: { spawn: { variables:" in source
    assert 'configurationSection: "spawn"' in source
    sent = {"spawn": {"path": "spawn", "variables": "vars/dev.json"}}
    assert variables_setting(sent) == (True, "vars/dev.json")
    assert variables_setting({"spawn": {"path": "spawn", "variables": ""}}) == (True, None)


def test_contributed_command_runs_the_servers_preview() -> None:
    commands = manifest()["contributes"]["commands"]  # type: ignore[index]
    assert [c["command"] for c in commands] == ["spawn.showPreview"]
    source = extension()
    assert 'registerCommand("spawn.showPreview"' in source
    assert f'command: "{PREVIEW_COMMAND}"' in source


def test_extension_js_is_valid_javascript() -> None:
    node = shutil.which("node")
    if node is not None:
        done = subprocess.run([node, "--check", str(FOLDER / "extension.js")],
                              capture_output=True, text=True, check=False)
        assert (done.returncode, done.stderr) == (0, "")
    source = extension()  # without node (CI need not have it): the shape of a module
    assert source.count("{") == source.count("}")
    assert source.count("(") == source.count(")")
    assert "module.exports = { activate, deactivate };" in source
