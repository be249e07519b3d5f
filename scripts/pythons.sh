# The interpreters the test suite runs under (sourced by install.sh and test.sh): the oldest supported one and
# Python 3.12, which warns where 3.11 is silent (a fork with threads alive, deprecated APIs). pyenv's newest 3.12
# when pyenv has one, else a python3.12 on PATH.
_py312=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -n 1)
PYTHONS=(python3 "$( { [ -n "$_py312" ] && PYENV_VERSION=$_py312 pyenv which python3.12 2>/dev/null; } \
                     || command -v python3.12 || echo python3.12)")
unset _py312
