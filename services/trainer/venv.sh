# Sourced by train.sh and test.sh: creates or updates the project-local virtual environment
# <repo>/.tools/trainer-venv from requirements.txt (exact pins). A stamp holding the hash of
# requirements.txt makes a second run a no-op. Sets $PY to the venv's python.
trainer_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$trainer_dir/../.." && pwd)"
venv="$repo_root/.tools/trainer-venv"
req="$trainer_dir/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "trainer: installing Python dependencies into $venv (torch is ~3 GB the first time)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
PY="$venv/bin/python"
export PYTHONPATH="$trainer_dir${PYTHONPATH:+:$PYTHONPATH}"
# Two threads (the machine has two cores); passive OpenMP waits keep training from collapsing
# when other jobs (cargo builds) hold a core.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
