#!/usr/bin/env bash
# Run the official Python client's own end-to-end suite (kubernetes-client/python,
# kubernetes/e2e_test) against a kubesvc cluster.
#   tools/client_e2e.sh CHECKOUT [pytest args]
# CHECKOUT is a clone of github.com/kubernetes-client/python. The suite is not part of this
# repository: it is installed into a throwaway virtual environment next to the client it
# tests, and run against a fresh 2-node cluster, which is removed afterwards.
set -euo pipefail
checkout=$(realpath "${1:?usage: tools/client_e2e.sh CHECKOUT [pytest args]}")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/kubesvc-client-e2e.XXXXXX)
name=ce2e$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
  HOME=$work/home "$root/.venv/bin/kubesvc" down --name "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q kubernetes pytest pytest-timeout
site=$("$work/venv/bin/python" -c 'import kubernetes, os; print(os.path.dirname(kubernetes.__file__))')
cp -r "$checkout/kubernetes/e2e_test" "$site/"
mkdir -p "$work/home"
HOME=$work/home "$root/.venv/bin/kubesvc" up --name "$name" --nodes 2
# the suite opens its YAML fixtures by paths relative to the checkout
cd "$checkout"
HOME=$work/home "$work/venv/bin/python" -m pytest -q -p no:cacheprovider -rs --timeout 180 \
  "$site/e2e_test" "$@"
