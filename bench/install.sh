# shellcheck shell=bash
# Installs what the benchmark needs (sourced by run.sh, as root, before it enters the
# private namespace). Only what is missing is installed.

# Debian packages: command:package. dnsmasq-base is the dnsmasq program without the
# system service of the "dnsmasq" package.
install_debian_tools() {
  local need=() b
  for b in dnsperf:dnsperf unbound:unbound dnsmasq:dnsmasq-base nsd:nsd dig:bind9-dnsutils \
           taskset:util-linux unshare:util-linux bc:bc ps:procps ip:iproute2 curl:curl \
           openssl:openssl callgrind_control:valgrind; do
    command -v "${b%%:*}" >/dev/null 2>&1 || need+=("${b#*:}")
  done
  case " $SUTS " in *" pdns "*) command -v pdns_recursor >/dev/null 2>&1 || need+=(pdns-recursor) ;; esac
  case " $SUTS " in *" sinkhole_compiled "*) command -v cc >/dev/null 2>&1 || need+=(build-essential) ;; esac
  [ ${#need[@]} -gt 0 ] || return 0
  echo "installing: ${need[*]}" >&2
  # The unbound, nsd and pdns-recursor packages start a system service when installed;
  # the benchmark runs its own copies, so keep the package scripts from starting any.
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" || {
    [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
    return 1
  }
  [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
}

# Python: sinkhole's own dependencies, dnslib (the naive baseline) and matplotlib (the
# chart). Uses $PYTHON (default python3) when it has them or pip can add them; otherwise
# (e.g. Debian's python3, which refuses pip installs) a virtual environment in bench/.venv.
# Sets PY to the interpreter to use.
install_python_deps() {
  PY=$(command -v "${PYTHON:-python3}")
  PY=$("$PY" -c 'import sys; print(sys.executable)')   # past wrappers such as pyenv shims
  if ! _py_has_all "$PY" && [ -x "$HERE/.venv/bin/python" ]; then PY=$HERE/.venv/bin/python; fi
  _py_has_all "$PY" && return 0
  if ! _externally_managed "$PY"; then
    _pip_missing "$PY" && _py_has_all "$PY" && return 0
  fi
  echo "creating a virtual environment in $HERE/.venv" >&2
  if ! "$PY" -m venv "$HERE/.venv" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv "$HERE/.venv"
  fi
  PY=$HERE/.venv/bin/python
  _pip_missing "$PY"
  _py_has_all "$PY" || { echo "could not install the Python dependencies" >&2; return 1; }
}

_py_has_all() {
  PYTHONPATH=$REPO "$1" -c 'import resolver.service.app, resolver.service.cli, dnslib, matplotlib' \
    2>/dev/null || return 1
  case " $SUTS " in *" sinkhole_compiled "*) "$1" -c 'import mypyc.build, setuptools' 2>/dev/null ;; esac
}

_externally_managed() {   # PEP 668: the distribution's Python refuses pip installs
  "$1" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' \
    2>/dev/null
}

_pip_missing() {   # PY : pip-install what PY lacks
  local want=()
  PYTHONPATH=$REPO "$1" -c 'import resolver.service.app, resolver.service.cli' 2>/dev/null || want+=(-e "$REPO")
  "$1" -c 'import dnslib' 2>/dev/null || want+=(dnslib)
  "$1" -c 'import matplotlib' 2>/dev/null || want+=(matplotlib)
  case " $SUTS " in   # the compiled build (setup.py) of sinkhole_compiled
    *" sinkhole_compiled "*) "$1" -c 'import mypyc.build, setuptools' 2>/dev/null || want+=(mypy setuptools) ;;
  esac
  [ ${#want[@]} -gt 0 ] || return 0
  echo "pip install ${want[*]}" >&2
  "$1" -m pip install -q "${want[@]}"
}
