#!/usr/bin/env bash
# Re-derive the pins of tests/storm/test_requests.py (scenario S, HashMap orders, doubles)
# from Storm's own classes: copies OciContainerExecutorConfig and the Docker*Command classes
# unchanged out of a Storm git checkout, compiles them with Harness.java and prints the
# outputs' sha256. Not run by the tests (it needs a JDK and Maven's jars).
#   tests/storm/java/regenerate.sh <storm git dir> [<~/.m2/repository>]
set -euo pipefail
storm=${1:?usage: regenerate.sh <storm git dir> [<maven repository>]}
m2=${2:-$HOME/.m2/repository}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=storm-server/src/main/java/org/apache/storm/container
mkdir -p "$work/src/org/apache/storm/container/oci" "$work/src/org/apache/storm/container/docker"
git -C "$storm" show "HEAD:$src/oci/OciContainerExecutorConfig.java" \
  > "$work/src/org/apache/storm/container/oci/OciContainerExecutorConfig.java"
for class in DockerCommand DockerRunCommand DockerWaitCommand DockerPsCommand DockerStopCommand \
             DockerRmCommand DockerInspectCommand; do
  git -C "$storm" show "HEAD:$src/docker/$class.java" \
    > "$work/src/org/apache/storm/container/docker/$class.java"
done
cp "$here/Harness.java" "$work/src/org/apache/storm/container/oci/"
jar() { ls "$m2"/$1 | sort -V | tail -1; }
cp=$(jar 'com/fasterxml/jackson/core/jackson-databind/2.*/jackson-databind-2.*.jar'):$(
  jar 'com/fasterxml/jackson/core/jackson-core/2.*/jackson-core-2.*.jar'):$(
  jar 'com/fasterxml/jackson/core/jackson-annotations/2.*/jackson-annotations-2.*.jar'):$(
  jar 'org/apache/commons/commons-lang3/3.*/commons-lang3-3.*.jar'):$(
  jar 'org/yaml/snakeyaml/2.*/snakeyaml-2.*.jar'):$(jar 'org/slf4j/slf4j-api/*/slf4j-api-*.jar')
mkdir -p "$work/classes" "$work/out"
javac -d "$work/classes" -cp "$cp" $(find "$work/src" -name '*.java')
java -cp "$work/classes:$cp" org.apache.storm.container.oci.Harness "$work/out" 2>/dev/null
(cd "$work/out" && sha256sum * && wc -c * && cat orders.txt worker.yaml runc.yaml)
