# The interpreters the test suite runs under (sourced by install.sh and test.sh): the oldest supported one and
# Python 3.12, which warns where 3.11 is silent (a fork with threads alive, deprecated APIs).
PYTHONS=(python3 "$(PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || command -v python3.12 || echo python3.12)")
