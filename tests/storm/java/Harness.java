package org.apache.storm.container.oci;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import org.apache.commons.lang3.StringUtils;
import org.apache.storm.container.docker.*;
import org.yaml.snakeyaml.DumperOptions;
import org.yaml.snakeyaml.Yaml;
import org.apache.storm.container.oci.OciContainerExecutorConfig.*;
import org.apache.storm.container.oci.OciContainerExecutorConfig.OciRuntimeConfig.*;

// Runs Storm's own classes (unchanged copies) on scenarios mirrored in tests/storm/test_requests.py.
public class Harness {
    // ServerUtils.shellCmd / writeScript, verbatim logic
    static String shellCmd(List<String> command) {
        List<String> changedCommands = new ArrayList<>(command.size());
        for (String str : command) {
            if (str == null) continue;
            changedCommands.add("'" + str.replaceAll("'", "'\"'\"'") + "'");
        }
        return StringUtils.join(changedCommands, " ");
    }
    static void writeScript(String path, List<String> command, Map<String, String> environment, String umask) throws IOException {
        try (BufferedWriter out = new BufferedWriter(new FileWriter(path))) {
            out.write("#!/bin/bash");
            out.newLine();
            if (environment != null) {
                for (String k : environment.keySet()) {
                    String v = environment.get(k);
                    if (v == null) v = "";
                    out.write(shellCmd(Arrays.asList("export", k + "=" + v)));
                    out.write(";");
                    out.newLine();
                }
            }
            out.newLine();
            if (umask != null) { out.write("umask " + umask); out.newLine(); }
            out.write("exec " + shellCmd(command) + ";");
        }
    }
    static void write(String path, String s) throws IOException {
        Files.write(Paths.get(path), s.getBytes(StandardCharsets.UTF_8));
    }

    public static void main(String[] a) throws Exception {
        String out = a[0];
        // --- HashMap orders: topEnvironment = new HashMap(); putAll(topology.environment); put(LD_LIBRARY_PATH)
        StringBuilder orders = new StringBuilder();
        String[][] sets = {
            {"WL_NOTE", "JAVA_OPTS", "LD_LIBRARY_PATH"},
            {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M"},
            {"HOME", "PATH", "LANG", "TZ", "USER", "SHELL", "TERM", "PWD", "LOGNAME", "MAIL", "EDITOR", "PAGER",
             "JAVA_HOME", "STORM_CONF_DIR", "Aa", "BB", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "y0"},
            {},
        };
        for (String[] keys : sets) {
            Map<String, String> env = new LinkedHashMap<>();
            for (String k : keys) env.put(k, "v");
            Map<String, String> top = new HashMap<>();
            top.putAll(env);
            top.put("LD_LIBRARY_PATH", "x");
            orders.append(String.join(",", top.keySet())).append("\n");
            Map<String, String> inc = new HashMap<>();
            for (String k : keys) inc.put(k, "v");
            orders.append(String.join(",", inc.keySet())).append("\n");
        }
        write(out + "/orders.txt", orders.toString());
        // --- Double.toString
        StringBuilder d = new StringBuilder();
        double[] ds = {1.0, 1.5, 2.6, 0.5, 0.01, 0.001, 0.0001, 1e7, 12345678.9, 9999999.0, 0.3, 1.1, 33.33, 0.07};
        for (double x : ds) d.append(Double.toString(x)).append("\n");
        for (int cpu = 1; cpu <= 2000; cpu += 7) d.append(Double.toString(cpu / 100.0)).append(" ");
        write(out + "/doubles.txt", d.toString());

        // --- the replay-like scenario
        String home = "/srv/storm/home", local = "/srv/storm/local", wid = "0f6a4c1e-9b2d-4e8f-a1c3-5d7e9f0b2c4a";
        String topo = "wordcount-7-1700000123"; int port = 6711;
        String wd = local + "/workers/" + wid;
        String art = home + "/logs/workers-artifacts/" + topo + "/" + port;
        String sdist = local + "/supervisor/stormdist/" + topo;
        String seccomp = "{\n\t\"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [ {\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"} ]\n}\n";
        Map<String, String> topoEnv = new LinkedHashMap<>();
        topoEnv.put("WL_NOTE", "it's \"quoted\"\t/\u00e9\u0001 $HOME `x` \\n");
        topoEnv.put("JAVA_OPTS", "-Xmx1g");
        topoEnv.put("LD_LIBRARY_PATH", "/opt/native");
        Map<String, String> top = new HashMap<>();
        top.putAll(topoEnv);
        String jlp = sdist + "/resources/Linux-amd64:" + sdist + "/resources:/usr/local/lib:/opt/local/lib:/usr/lib:/usr/lib64";
        jlp = jlp + ":" + top.get("LD_LIBRARY_PATH");
        top.put("LD_LIBRARY_PATH", jlp);
        List<String> command = Arrays.asList("/bin/sh", "-c", "trap 'echo TERM' TERM\necho \"it's\"\n", "storm-worker", art);
        writeScript(out + "/script.sh", command, top, "0027");

        List<OciLayer> layers = new ArrayList<>();
        layers.add(new OciLayer("application/vnd.squashfs", local + "/supervisor/oci-resources/layers/" + "a".repeat(64) + ".sqsh"));
        layers.add(new OciLayer("application/vnd.squashfs", local + "/supervisor/oci-resources/layers/" + "b".repeat(64) + ".sqsh"));
        List<OciMount> mounts = new ArrayList<>();
        String[][] ms = {
            {"/srv/ro", "/srv/ro", "ro"}, {"/srv/rw", "/srv/rw", "rw"},
            {"/etc/resolv.conf", "/etc/resolv.conf", "ro"}, {"/etc/hostname", "/etc/hostname", "ro"}, {"/etc/hosts", "/etc/hosts", "ro"},
            {"/srv/storm/nscd", "/srv/storm/nscd", "ro"}, {home, home, "ro"}, {"/sys/fs/cgroup", "/sys/fs/cgroup", "ro"},
            {local + "/supervisor", local + "/supervisor", "ro"}, {wd, wd, "rw"}, {art, art, "rw"},
            {local + "/workers-users/" + wid, local + "/workers-users/" + wid, "rw"}, {sdist + "/shared_by_topology", sdist + "/shared_by_topology", "rw"},
            {"/tmp", wd + "/tmp", "rw"}};
        for (String[] m : ms) mounts.add(new OciMount(m[0], "bind", m[1], Arrays.asList(m[2], "rbind", "rprivate")));
        List<String> env = new ArrayList<>(Arrays.asList("PATH=/bin", "LANG=C"));
        for (Map.Entry<String, String> e : top.entrySet()) env.add(e.getKey() + "=" + e.getValue());
        List<String> args = new ArrayList<>(Arrays.asList("/init", "--", "bash", wd + "/storm-worker-script.sh"));
        OciProcessConfig process = new OciProcessConfig(false, null, wd, env, args, null, null, null, true, 0, null, null);
        OciLinuxConfig.Resources.Cpu cpu = new OciLinuxConfig.Resources.Cpu(0, 150 * 100000L / 100, 100000, 0, 0, null, null);
        cpu.setCpus(StringUtils.join(Arrays.asList("0", "1"), ","));
        cpu.setMems("0");
        OciLinuxConfig.Resources.Memory mem = new OciLinuxConfig.Resources.Memory(896 * 1024L * 1024L, 0, 0, 0, 0, 0, false);
        OciLinuxConfig.Resources res = new OciLinuxConfig.Resources(null, mem, cpu, null, null, null, null, null);
        OciLinuxConfig linux = new OciLinuxConfig(null, null, null, null, "/wltest-storm/" + port + "-" + wid, res, null, null, seccomp, null, null, null, null);
        OciRuntimeConfig rc = new OciRuntimeConfig(null, mounts, process, null, null, null, linux);
        OciContainerExecutorConfig cfg = new OciContainerExecutorConfig("wlalice", port + "-" + wid,
            local + "/workers/" + wid + "/artifacts/container-" + wid + ".pid", wd + "/storm-worker-script.sh", layers, 0, rc);
        new ObjectMapper().writeValue(new File(out + "/oci-config.json"), cfg);

        DockerRunCommand r = new DockerRunCommand(wid, "2001:2001", "wl-tests/storm-replay:1");
        r.detachOnRun().setNetworkType("host").setReadonly()
            .addReadOnlyMountLocation("/sys/fs/cgroup", "/sys/fs/cgroup", true)
            .addReadOnlyMountLocation(home, home, true)
            .addReadOnlyMountLocation(local + "/supervisor", local + "/supervisor", true)
            .addReadWriteMountLocation(wd, wd, true)
            .addReadWriteMountLocation(art, art, true)
            .addReadWriteMountLocation(local + "/workers-users/" + wid, local + "/workers-users/" + wid, true)
            .addReadWriteMountLocation("/srv/storm/nscd", "/srv/storm/nscd", true)
            .addReadWriteMountLocation(sdist + "/shared_by_topology", sdist + "/shared_by_topology", true)
            .addReadWriteMountLocation(wd + "/tmp", "/tmp", true)
            .addAllReadOnlyMountLocations(Arrays.asList("/srv/ro"), true)
            .addAllReadWriteMountLocations(Arrays.asList("/srv/rw"), true);
        r.addCpuSetBindings(Arrays.asList("0", "1"), "0");
        r.setCGroupParent("/wltest-storm").groupAdd(new String[]{"2001", "2100"}).setContainerWorkDir(wd)
            .setCidFile(wd + "/container.cid").setCapabilities(Collections.emptySet()).setNoNewPrivileges();
        r.setSeccompProfile("/srv/storm/etc/seccomp.json");
        r.setCpus(150 / 100.0);
        r.setMemoryMb(896);
        r.setOverrideCommandWithArgs(Arrays.asList("bash", wd + "/storm-worker-script.sh"));
        write(out + "/docker-run.sh", r.getCommandWithArguments());

        // --- worker.yaml (Container.writeLogMetadata) and runc-<cid>.yaml (saveRuncYaml)
        Map<String, Object> data = new HashMap<>();
        data.put("topology.submitter.user", "wlalice");
        data.put("worker-id", wid);
        data.put("logs.groups", new HashSet<String>().toArray());
        data.put("logs.users", new HashSet<String>().toArray());
        try (Writer w = new FileWriter(out + "/worker.yaml")) { new Yaml().dump(data, w); }
        DumperOptions options = new DumperOptions();
        options.setIndent(2); options.setPrettyFlow(true); options.setDefaultFlowStyle(DumperOptions.FlowStyle.BLOCK);
        Map<String, Object> ry = new HashMap<>();
        ry.put("imageName", "wl-tests/storm-replay:1");
        ry.put("manifest", "c".repeat(64));
        ry.put("configPath", "/srv/storm/hdfs/config/" + "c".repeat(64));
        try (Writer w = new FileWriter(out + "/runc.yaml")) { new Yaml(options).dump(ry, w); }
    }
}
