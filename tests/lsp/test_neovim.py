"""End to end with a real editor: headless Neovim opens a migration, changes it without
saving, and receives the server's diagnostic at the right line (``.ci/run`` installs
``neovim``). Neovim 0.7 (Debian's) has no ``vim.lsp.start``; ``start_client`` and
``buf_attach_client`` are what ``vim.lsp.start`` does on 0.8+ (docs/editors.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import spawn_env
from tests.lint.conftest import LintProject

SCRIPT = r"""
local root, file, out, python = unpack(_G.SPAWN_ARGS)
vim.cmd("edit " .. vim.fn.fnameescape(file))
vim.api.nvim_buf_set_lines(0, 0, -1, false,
  { "BEGIN;", "{% set t = 'a' %}", "CREATE TABLE {{ t|safe }} (id int);", "SELEC 1;", "COMMIT;" })
local id = vim.lsp.start_client({ name = "spawn", cmd = { python, "-m", "spawn_db", "lsp" },
                                  root_dir = root })
vim.lsp.buf_attach_client(0, id)
local ok = vim.wait(30000, function() return #vim.diagnostic.get(0) > 0 end, 50)
local found = {}
for _, d in ipairs(vim.diagnostic.get(0)) do
  table.insert(found, { lnum = d.lnum, col = d.col, message = d.message })
end
vim.fn.writefile({ vim.fn.json_encode({ ok = ok, diagnostics = found,
                                        modified = vim.bo.modified }) }, out)
vim.lsp.stop_client(id)
vim.wait(10000, function() return vim.lsp.get_client_by_id(id) == nil end, 50)
vim.cmd("qa!")
"""


def test_neovim_shows_the_diagnostic_of_an_unsaved_change(project: LintProject,
                                                          tmp_path: Path) -> None:
    nvim = shutil.which("nvim")
    assert nvim is not None, "neovim is not installed (.ci/run installs it with apt-get)"
    path = project.migration("20260101000000-a", "BEGIN;\nCOMMIT;\n")
    out, script = tmp_path / "out.json", tmp_path / "test.lua"
    args = json.dumps([str(project.root), str(path), str(out), sys.executable])
    script.write_text(f"_G.SPAWN_ARGS = vim.fn.json_decode([==[{args}]==])\n{SCRIPT}",
                      encoding="utf-8")
    # A Lua error would leave headless Neovim waiting: it quits with status 1 instead.
    run = f"lua local ok, e = pcall(dofile, [==[{script}]==]) if not ok then " \
          "io.stderr:write(e) vim.cmd('cquit 1') end"
    done = subprocess.run([nvim, "--headless", "--clean", "-n", "-c", run],
                          cwd=project.root, env=spawn_env(), capture_output=True, text=True,
                          timeout=90, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == {
        "ok": True, "modified": True,
        "diagnostics": [{"lnum": 3, "col": 0,
                         "message": 'syntax error: syntax error at or near "SELEC"'}]}
    assert path.read_text(encoding="utf-8") == "BEGIN;\nCOMMIT;\n"
