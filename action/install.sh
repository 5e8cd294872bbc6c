#!/usr/bin/env bash
# Install spawn for the GitHub Action in ../action.yml, then run `spawn --version`.
#
# The action runs exactly this script, and so does tests/e2e/test_action.py, so what
# the suite checks is what a workflow gets. Everything comes in through the
# environment, never through `${{ }}` in the step's shell text (a ref is user input):
#
#   SPAWN_VERSION     empty (the action's default): install the action's own code, the
#                     checkout this script sits in, at the ref named in `uses:`. Otherwise
#                     a git ref of SPAWN_REPOSITORY (a tag, branch or commit); a bare
#                     release number such as 0.2.0 means the release tag v0.2.0.
#   SPAWN_REPOSITORY  owner/name to install a SPAWN_VERSION from; empty: GitHub's
#                     GITHUB_ACTION_REPOSITORY, then the owner/name in the path the runner
#                     checked the action out to (.../_actions/OWNER/NAME/REF), because
#                     GitHub leaves both of the former empty in composite actions.
#   GITHUB_SERVER_URL where the repository lives (GitHub Enterprise); default github.com.
#
# spawn is installed with the `python` first on PATH (actions/setup-python puts its own
# there) and must then be the `spawn` first on PATH, which the workflow's later steps run.
set -euo pipefail
LC_ALL=C  # (not exported) the patterns below match ASCII ranges whatever the locale

# A GitHub error annotation; %, CR and LF escaped as GitHub requires, so a version with a
# line break cannot start a workflow command of its own.
fail() {
  local message="${1//%/%25}"
  message="${message//$'\r'/%0D}"
  message="${message//$'\n'/%0A}"
  printf '::error title=spawn action::%s\n' "$message" >&2
  exit 2
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${SPAWN_VERSION:-}"

# The repository a version is installed from: the input, GitHub's variable, the checkout path.
repository() {
  local repo="${SPAWN_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-}}"
  if [[ -z "$repo" && "$root" =~ /_actions/([^/]+)/([^/]+)/[^/]+$ ]]; then
    repo="${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
  fi
  [[ -n "$repo" ]] || fail "version '$version' was given but the repository to install it from is unknown: set SPAWN_REPOSITORY=owner/name, or leave version empty to install the action's own checkout ($root)"
  [[ "$repo" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || fail "repository '$repo' is not owner/name"
  printf '%s' "$repo"
}

# A git ref as the version input gives it; anything else could change pip's requirement.
git_ref() {
  [[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_./-]*$ && "$version" != *..* && "$version" != */ ]] \
    || fail "version '$version' is not a git ref: use a release tag (v0.2.0 or 0.2.0), a branch or a commit, or leave it empty for the action's own ref"
  if [[ "$version" =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
    printf 'v%s' "$version"
  else
    printf '%s' "$version"
  fi
}

if [[ -z "$version" ]]; then
  [[ -f "$root/pyproject.toml" ]] || fail "the action's checkout $root has no pyproject.toml: set version to a git ref of spawn"
  echo "Installing spawn from the action's own checkout: $root"
  requirement="$root"
else
  ref="$(git_ref)"
  repo="$(repository)"
  requirement="spawn-db @ git+${GITHUB_SERVER_URL:-https://github.com}/$repo@$ref"
  echo "Installing $requirement"
fi

python -m pip install --disable-pip-version-check "$requirement"

scripts="$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
found="$(command -v spawn || true)"
[[ "$found" -ef "$scripts/spawn" ]] \
  || fail "the spawn first on PATH is '${found:-none}', not the one just installed in $scripts: put $scripts first on PATH"
spawn --version
