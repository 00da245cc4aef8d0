# Two entry points do all the set-up on a fresh machine:
#   make demo    install, start the local stack, stream vtest.avi through the pipeline
#   make test    install, then run unit + integration tests against real servers
# Everything else is a step of those two.

PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
DEMO_SECONDS ?= 60
APT_PACKAGES := clickhouse-server clickhouse-client \
	gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav chromium chromium-driver \
	iproute2 iputils-ping
# The local Apache Kafka cluster (`infra up --broker kafka`, the tests' Kafka leg): Java 17
# runs it, Maven fetches its jars once into ~/.cache/autosteer/kafka-<version>.
KAFKA_APT_PACKAGES := openjdk-17-jre-headless maven

.PHONY: setup system-deps venv models demo demo-drift test test-unit bench lint down clean

setup: system-deps venv

# Debian packages: ClickHouse server (18.16), the GStreamer RTSP server for the test
# camera, Chromium for the UI tests, ip and ping for the edge/cloud testbed, and Java + Maven for the local Kafka cluster (only
# when `java` or `mvn` is missing). Installed only when missing; needs root (or sudo)
# and apt-get.
system-deps:
	@pkgs="$(APT_PACKAGES)"; \
	if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then pkgs="$$pkgs $(KAFKA_APT_PACKAGES)"; fi; \
	if [ -x /usr/sbin/clickhouse-server ] && /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer','1.0')" 2>/dev/null \
	   && gst-inspect-1.0 x264enc >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
	   && command -v ip >/dev/null && command -v ping >/dev/null \
	   && command -v java >/dev/null && command -v mvn >/dev/null; then \
	  echo "system packages: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; \
	else \
	  echo "install these Debian/Ubuntu packages first: $$pkgs"; exit 1; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Converts and quantizes the detectors once (cached under ~/.cache/autosteer).
models: setup
	$(BIN)/autosteer models prepare

demo: setup
	$(BIN)/autosteer demo --seconds $(DEMO_SECONDS)

# The closed loop: 30 s of day, then night falls; drift -> retrain -> canary -> promotion.
demo-drift: setup
	$(BIN)/autosteer demo --drift --seconds 30

test: setup
	$(BIN)/python -m pytest -q

test-unit: venv
	$(BIN)/python -m pytest -q -m "not integration"

bench: setup
	$(BIN)/python bench/pipeline_overhead.py

lint: venv
	$(BIN)/ruff check .

down: venv
	$(BIN)/autosteer infra down

clean:
	rm -rf $(VENV) .pytest_cache
