// Starts `spawn lsp` for the SQL files of a workspace that holds a spawn.toml.
// Settings: spawn.path (the command, read at start) and spawn.variables (sent to the
// server at start as initializationOptions, then on every change as
// workspace/didChangeConfiguration, which the server applies at once).
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const settings = vscode.workspace.getConfiguration("spawn");
  const command = settings.get("path") || "spawn";
  const serverOptions = { command, args: ["lsp"] };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "sql" }],
    initializationOptions: { spawn: { variables: settings.get("variables") || "" } },
    synchronize: { configurationSection: "spawn" },
  };
  client = new LanguageClient("spawn", "Spawn", serverOptions, clientOptions);
  context.subscriptions.push(
    vscode.commands.registerCommand("spawn.showPreview", showPreview),
  );
  return client.start();
}

// The rendered SQL of the active editor's file, in a new untitled SQL editor.
async function showPreview() {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !client) {
    return;
  }
  try {
    const found = await client.sendRequest("workspace/executeCommand", {
      command: "spawn.preview",
      arguments: [editor.document.uri.toString()],
    });
    const doc = await vscode.workspace.openTextDocument({ language: "sql", content: found.sql });
    await vscode.window.showTextDocument(doc, vscode.ViewColumn.Beside);
    vscode.window.setStatusBarMessage(`${found.file} rendered with ${found.origin}`, 5000);
  } catch (error) {
    vscode.window.showErrorMessage(error.message);
  }
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
