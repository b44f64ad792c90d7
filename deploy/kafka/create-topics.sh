#!/usr/bin/env bash
# Creates eventmatchd's topics on an Apache Kafka cluster with the settings the daemon expects.
# Run it once per cluster (again is harmless: existing topics are left as they are). The
# docker-compose `topics` job runs it; on Kubernetes use deploy/kubernetes/topics.yaml
# (Strimzi) or run it from any pod that has the Kafka CLI.
#
#   BOOTSTRAP=kafka:9092 PARTITIONS=6 REPLICATION=3 deploy/kafka/create-topics.sh
#
# The same settings are in the daemon (`eventmatchd create-topics`, src/daemon/kafka.rs
# topic_specs); tests/deploy.rs checks that all of them agree.
#
# Why each setting:
# - events: the input, written by authentik (or whatever produces events). PARTITIONS bounds
#   how many eventmatchd replicas share the work (one consumer group). Plain retention: once
#   every notification an event caused is on the notification topic, the event is not needed.
# - control: the policy set IS this topic. One partition, because commands need one total
#   order (a PATCH after its POST); never deleted or compacted (retention.ms/bytes -1), because
#   every instance rebuilds the policy set by replaying it from offset 0 at start. Losing a
#   command would silently change matching.
# - notifications: compacted. The latest record per notification pk is its current state
#   (seen flag included) and a tombstone deletes it; instances rebuild their index from it at
#   start, and downstream consumers read it like a table. Same partition count as events.
#   Tombstones are kept 7 days (delete.retention.ms), eventmatchd's
#   notifications.deleted_horizon_secs: a restarted instance learns of deletions from them,
#   so reprocessing a deleted notification's event does not bring it back.
# - every topic: min.insync.replicas=2 (MIN_INSYNC_REPLICAS), so that acks=all means two
#   copies; a single-broker cluster (compose) needs 1.
# - results: one record per control command (HTTP-like status and body), for whoever issued
#   it. Seven days is plenty to read a result.
# - dlq: invalid events with the reason and the original bytes, kept 14 days so they can be
#   fixed and re-sent.
# - executions: policy_execution events for policies with execution_logging, seven days.
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:-localhost:9092}
PARTITIONS=${PARTITIONS:-3}
REPLICATION=${REPLICATION:-1}
MIN_INSYNC_REPLICAS=${MIN_INSYNC_REPLICAS:-2}
KAFKA_TOPICS=${KAFKA_TOPICS:-$(command -v kafka-topics.sh || echo /opt/kafka/bin/kafka-topics.sh)}

EVENTS_TOPIC=${EVENTS_TOPIC:-authentik.events}
CONTROL_TOPIC=${CONTROL_TOPIC:-authentik.control}
NOTIFICATIONS_TOPIC=${NOTIFICATIONS_TOPIC:-authentik.notifications}
RESULTS_TOPIC=${RESULTS_TOPIC:-authentik.control.results}
DLQ_TOPIC=${DLQ_TOPIC:-authentik.events.dlq}
EXECUTIONS_TOPIC=${EXECUTIONS_TOPIC:-authentik.policy_executions}

# create NAME PARTITIONS CONFIG...
create() {
  local name=$1 partitions=$2
  shift 2
  local configs=()
  for c in "$@" "min.insync.replicas=$MIN_INSYNC_REPLICAS"; do configs+=(--config "$c"); done
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor "$REPLICATION" "${configs[@]}"
  echo "topic $name: $partitions partition(s), $*"
}

create "$EVENTS_TOPIC" "$PARTITIONS" cleanup.policy=delete
create "$CONTROL_TOPIC" 1 cleanup.policy=delete retention.ms=-1 retention.bytes=-1
create "$NOTIFICATIONS_TOPIC" "$PARTITIONS" cleanup.policy=compact delete.retention.ms=604800000
create "$RESULTS_TOPIC" 1 cleanup.policy=delete retention.ms=604800000
create "$DLQ_TOPIC" 1 cleanup.policy=delete retention.ms=1209600000
create "$EXECUTIONS_TOPIC" "$PARTITIONS" cleanup.policy=delete retention.ms=604800000
