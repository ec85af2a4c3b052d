# The two commands of the README (each sets up what it needs first):
#   make demo   the tracker node on a real recorded sequence, over real ROS 2 traffic
#   make test   lint + the whole test suite
VENV ?= .venv
ENV = . $(VENV)/bin/stark_ros_env.sh &&

.PHONY: setup demo test lint clean

setup:
	@bash scripts/setup_env.sh

demo:
	@bash scripts/setup_env.sh --need-shared
	@$(ENV) python -m stark_ros.demo $(DEMO_ARGS)

lint: setup
	@$(ENV) ruff check stark_ros training test scripts/tracker_node launch

# Tests import the INSTALLED package (interfaces + Python modules in one directory), so they run
# with the venv's pytest from test/, never with the source tree first on sys.path.
test:
	@bash scripts/setup_env.sh --need-shared
	@$(ENV) ruff check stark_ros training test scripts/tracker_node launch
	@$(ENV) pytest $(PYTEST_ARGS)

clean:
	rm -rf build $(VENV)
