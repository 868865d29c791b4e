# Sourced by run-tests and run-demo: make sure the virtual environment
# $VENV (default .venv) exists with the package and all extras installed,
# and set PYTHON to its interpreter.
VENV="${AIOCOAP_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PYTHON="$VENV/bin/python"
"$PYTHON" -m pip install --quiet --upgrade pip
"$PYTHON" -m pip install --quiet -e '.[all,test]'
