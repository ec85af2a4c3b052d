# The two commands of the README (each sets up what it needs first):
#   make demo   the tracker node on a real recorded sequence, over real ROS 2 traffic
#   make test   lint + the whole test suite
# Two environments by purpose (scripts/setup_env.sh; README "Environments"):
#   $(RUNTIME_VENV)  node, demo, evaluation, bag replay: ONNX Runtime + rclpy, no torch (make demo)
#   $(VENV)          everything: + torch, export, training, the tests (make test)
# Both install the package with ament_cmake; after a source edit, `make setup` (seconds) brings it in.
VENV ?= .venv
RUNTIME_VENV ?= .venv-runtime
ENV = . $(VENV)/bin/stark_ros_env.sh &&
RUNTIME_ENV = . $(RUNTIME_VENV)/bin/stark_ros_env.sh &&

.PHONY: setup setup-runtime demo test lint clean

setup:
	@STARK_ROS_VENV=$(VENV) bash scripts/setup_env.sh

setup-runtime:
	@STARK_ROS_VENV=$(RUNTIME_VENV) bash scripts/setup_env.sh --runtime

demo:
	@STARK_ROS_VENV=$(RUNTIME_VENV) bash scripts/setup_env.sh --runtime --need-shared
	@$(RUNTIME_ENV) python -m stark_ros.demo $(DEMO_ARGS)

lint: setup
	@$(ENV) ruff check stark_ros training test scripts/tracker_node launch

# Tests import the INSTALLED package (interfaces + Python modules in one directory), so they run
# with the venv's pytest from test/, never with the source tree first on sys.path.
test:
	@STARK_ROS_VENV=$(VENV) bash scripts/setup_env.sh --need-shared
	@$(ENV) ruff check stark_ros training test scripts/tracker_node launch
	@$(ENV) pytest $(PYTEST_ARGS)

clean:
	rm -rf build $(VENV) $(RUNTIME_VENV)
