#!/usr/bin/env bash
# What a fresh Debian 12 machine needs for AisleWatch's real-server tests (run as root; idempotent).
#
#   - Debian packages: PostgreSQL, GStreamer's RTSP server for Debian's python3, ffmpeg, Chromium,
#     poppler, libGL (opencv), Java 17 and Maven (Kafka).  Only missing ones are installed, and
#     `apt-get update` runs only when something is missing.
#   - Apache Kafka's jars into deploy/kafka/lib/ (Maven Central; ~/.m2 caches them), only when the
#     pinned version is not there yet.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PACKAGES=(
  postgresql
  gir1.2-gst-rtsp-server-1.0 python3-gi
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-tools gstreamer1.0-libav
  ffmpeg
  chromium chromium-driver
  poppler-utils
  libgl1
)
command -v java >/dev/null 2>&1 || PACKAGES+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || PACKAGES+=(maven)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: missing Debian packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install.sh: Debian packages present"
fi

# Apache Kafka jars, for the version pinned in the pom.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)"
if [[ ! -f "deploy/kafka/lib/kafka_2.13-${KAFKA_VERSION}.jar" ]]; then
  echo "install.sh: fetching Apache Kafka ${KAFKA_VERSION} jars into deploy/kafka/lib"
  rm -rf deploy/kafka/lib
  (cd deploy/kafka && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib)
else
  echo "install.sh: Kafka ${KAFKA_VERSION} jars present"
fi

# Fail here, with a clear message, rather than in the middle of the test run.
java -version 2>&1 | head -1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' \
  || { echo "install.sh: Kafka needs Java 17 or newer: $(java -version 2>&1 | head -1)" >&2; exit 1; }
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
  || { echo "install.sh: /usr/bin/python3 cannot import GstRtspServer" >&2; exit 1; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || { echo "install.sh: PostgreSQL's initdb not found" >&2; exit 1; }
echo "install.sh: ready"
