import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifests } from '../../agent/inject/io.js';
import type { Container, KubeObject, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { parsePodSpec, type PodSpec } from '../../supervisor/protocol/pod.js';

// These tests run the built CLI as a separate process; `npm test` builds it first.
const CLI = path.resolve('dist/agent/cli.js');
const EXAMPLES = path.resolve('examples/reference');
const SIDECARSET = path.join(EXAMPLES, 'sidecarset.yaml');
// 2025-04-29T03:26:06Z, the time of the reference document's log line.
const EPOCH = '1745897166';

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

let directory: string;

function runCli(args: string[], input?: string): CliResult {
  const result = spawnSync(process.execPath, [CLI, 'inject', ...args], {
    input,
    encoding: 'utf8',
    env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH },
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function writeInput(name: string, text: string): string {
  const file = path.join(directory, name);
  writeFileSync(file, text);
  return file;
}

function documentsOf(result: CliResult): KubeObject[] {
  expect(result.stderr).not.toContain('error');
  expect(result.status).toBe(0);
  return parseManifests(result.stdout, 'CLI output') as KubeObject[];
}

function templateOf(object: KubeObject): PodTemplateSpec {
  const spec = object.spec as { template: PodTemplateSpec };
  return spec.template;
}

function podSpecOf(template: PodTemplateSpec): PodSpec {
  const init = template.spec.initContainers?.[0];
  expect(init?.name).toBe('tandem-init');
  return parsePodSpec(init!.command![4]!, 'tandem-init');
}

function container(template: PodTemplateSpec, name: string): Container {
  const found = template.spec.containers.find((candidate) => candidate.name === name);
  expect(found, `container ${name}`).toBeDefined();
  return found!;
}

function supervise(name: string, role: string, priority: number): string[] {
  return ['/tandem/bin/tandem', 'supervise', '--name', name, '--role', role, '--priority', String(priority), '--shared-dir', '/tandem', '--'];
}

// The reference Deployment with the label the SidecarSet selects, which the platform adds after
// scheduling, and the image configs as annotations so the test does not depend on local images.
function referenceDeployment(options: { label: boolean }): KubeObject {
  const deployment = parse(readFileSync(path.join(EXAMPLES, 'echo-server.yaml'), 'utf8')) as KubeObject;
  const template = templateOf(deployment);
  if (options.label) {
    template.metadata!.labels!['serverless.alibabacloud.com/virtual-node'] = 'true';
  }
  template.metadata!.annotations = {
    'entrypoint.tandem.dev/echo-server': '["/http-echo"]',
    'entrypoint.tandem.dev/filebeat': '[]',
  };
  return deployment;
}

beforeAll(() => {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing. Run \`npm run build\` first.`);
  }
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-inject-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('tandem inject on the reference example', () => {
  let result: CliResult;
  let template: PodTemplateSpec;

  beforeAll(() => {
    const input = writeInput('echo-server.json', JSON.stringify(referenceDeployment({ label: true })));
    result = runCli(['--sidecarset', SIDECARSET, input]);
    template = templateOf(documentsOf(result)[0]!);
  });

  it('injects filebeat before the echo server', () => {
    expect(template.spec.containers.map((entry) => entry.name)).toEqual(['filebeat', 'echo-server']);
  });

  it('wraps both containers with their original argv', () => {
    const filebeat = container(template, 'filebeat');
    const echo = container(template, 'echo-server');
    expect(filebeat.command).toEqual(supervise('filebeat', 'sidecar', 1));
    expect(filebeat.args).toEqual(['/bin/sh', '-c', 'cat /etc/filebeat.yml && sleep 36000']);
    expect(echo.command).toEqual(supervise('echo-server', 'app', 0));
    expect(echo.args).toEqual(['/http-echo', '-listen=:8080', '-text="hello world"']);
  });

  it('moves the stdlog mount to tandem-logs', () => {
    expect(container(template, 'filebeat').volumeMounts).toEqual([
      { name: 'config', mountPath: '/etc/filebeat.yml', readOnly: true, subPath: 'filebeat.yml' },
      { name: 'tandem-logs', mountPath: '/var/log/std', readOnly: true },
      { name: 'tandem', mountPath: '/tandem', readOnly: true },
      { name: 'tandem-state', mountPath: '/tandem/state' },
      { name: 'tandem-logs', mountPath: '/tandem/logs' },
    ]);
  });

  it('keeps the cross-namespace ConfigMap volume', () => {
    expect(template.spec.volumes).toEqual([
      { name: 'config', configMap: { name: 'kube-system/filebeat-config' } },
      { name: 'tandem', emptyDir: {} },
      { name: 'tandem-state', emptyDir: {} },
      { name: 'tandem-logs', emptyDir: {} },
    ]);
  });

  it('writes the pod spec for the supervisors', () => {
    expect(podSpecOf(template)).toEqual({
      version: 1,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      containers: [
        { name: 'filebeat', role: 'sidecar', priority: 1, readiness: 'started' },
        { name: 'echo-server', role: 'app', priority: 0 },
      ],
    });
  });

  it('uses the default tandem image', () => {
    expect(template.spec.initContainers?.[0]?.image).toBe('localhost/tandem:0.1.0');
  });

  it('writes the Kruise annotations', () => {
    const annotations = template.metadata?.annotations ?? {};
    expect(annotations['kruise.io/sidecarset-injected-list']).toBe('filebeat-sidecarset');
    const hashes = JSON.parse(annotations['kruise.io/sidecarset-hash']!) as Record<string, Record<string, unknown>>;
    expect(hashes['filebeat-sidecarset']).toMatchObject({ updateTimestamp: '2025-04-29T03:26:06Z', sidecarSetName: 'filebeat-sidecarset', sidecarList: ['filebeat'] });
  });

  it('reports each step on stderr', () => {
    expect(result.stderr).toContain('Deployment/echo-server: applied SidecarSet filebeat-sidecarset: added containers filebeat; volumes config, stdlog');
    expect(result.stderr).toContain('Deployment/echo-server: injected tandem: filebeat (sidecar, priority 1, readiness started');
    expect(result.stderr).toContain('Deployment/echo-server: replaced stdlog CSI volume stdlog with tandem-logs');
  });

  it('is idempotent', () => {
    const again = runCli(['--sidecarset', SIDECARSET, '-'], result.stdout);
    expect(again.status).toBe(0);
    expect(again.stdout).toBe(result.stdout);
    expect(again.stderr).toContain('Deployment/echo-server: already injected');
  });

  it('gives the same output on every run', () => {
    const input = writeInput('echo-server-again.json', JSON.stringify(referenceDeployment({ label: true })));
    expect(runCli(['--sidecarset', SIDECARSET, input]).stdout).toBe(result.stdout);
  });
});

describe('tandem inject on other inputs', () => {
  it('skips a SidecarSet whose selector misses', () => {
    const input = writeInput('unlabelled.yaml', JSON.stringify(referenceDeployment({ label: false })));
    const template = templateOf(documentsOf(runCli(['--sidecarset', SIDECARSET, input]))[0]!);
    expect(template.spec.containers.map((entry) => entry.name)).toEqual(['echo-server']);
    expect(template.metadata?.annotations).not.toHaveProperty('kruise.io/sidecarset-hash');
  });

  it('injects a Job with a command', () => {
    const job = `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 10
      containers:
      - name: migrate
        image: registry.example/migrate:1
        command: ["/migrate", "--to=$(TARGET)"]
        env:
        - name: TARGET
          value: latest
`;
    const template = templateOf(documentsOf(runCli([writeInput('job.yaml', job)]))[0]!);
    const migrate = container(template, 'migrate');
    expect(migrate.command).toEqual(supervise('migrate', 'app', 0));
    expect(migrate.args).toEqual(['/migrate', '--to=$(TARGET)']);
    expect(podSpecOf(template)).toMatchObject({ restartPolicy: 'Never', terminationGracePeriodSeconds: 10 });
  });

  it('injects a CronJob from its annotations', () => {
    const cronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            entrypoint.tandem.dev/report: '["/bin/report"]'
            cmd.tandem.dev/report: '["--since", "$(date)"]'
        spec:
          restartPolicy: OnFailure
          containers:
          - name: report
            image: registry.example/report:3
`;
    const [document] = documentsOf(runCli([writeInput('cronjob.yaml', cronJob)]));
    const spec = document!.spec as { schedule: string; jobTemplate: { spec: { template: PodTemplateSpec } } };
    const template = spec.jobTemplate.spec.template;
    expect(spec.schedule).toBe('0 3 * * *');
    expect(container(template, 'report').args).toEqual(['/bin/report', '--since', '$$(date)']);
    expect(podSpecOf(template).restartPolicy).toBe('OnFailure');
  });

  it('injects the items of a List', () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { mode: '0644' } },
        {
          apiVersion: 'apps/v1',
          kind: 'StatefulSet',
          metadata: { name: 'db' },
          spec: { template: { spec: { containers: [{ name: 'db', image: 'db:1', command: ['/db'] }] } } },
        },
      ],
    };
    const result = runCli([writeInput('list.yaml', JSON.stringify(list))]);
    const [output] = documentsOf(result) as [{ items: KubeObject[] }];
    expect(output.items[0]).toEqual(list.items[0]);
    expect(container(templateOf(output.items[1]!), 'db').command).toEqual(supervise('db', 'app', 0));
    expect(result.stdout).toContain('mode: "0644"');
    expect(result.stderr).toContain('List item 1 StatefulSet/db: injected tandem');
  });

  it('injects every document of a stream', () => {
    const stream = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    tandem.dev/sidecars: proxy
    readiness.tandem.dev/proxy: tcp:15001
spec:
  containers:
  - name: proxy
    image: proxy:1
    command: ["/proxy"]
  - name: web
    image: web:1
    command: ["/web"]
    env:
    - name: KRUISE_CONTAINER_PRIORITY
      value: "-1"
`;
    const result = runCli([writeInput('stream.yaml', stream)]);
    const [service, podObject] = documentsOf(result);
    expect(service).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } });
    expect(podSpecOf(podObject as unknown as PodTemplateSpec).containers).toEqual([
      { name: 'proxy', role: 'sidecar', priority: 1, readiness: 'tcp:15001' },
      { name: 'web', role: 'app', priority: -1 },
    ]);
    expect(result.stderr).toContain('Service/web: no pod template, passed through unchanged');
  });

  it('reads JSON from standard input', () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', annotations: { 'entrypoint.tandem.dev/app': '["/entry"]', 'cmd.tandem.dev/app': '["run"]' } },
      spec: { containers: [{ name: 'app', image: 'app:1' }] },
    };
    const result = runCli(['-'], JSON.stringify(pod));
    const [output] = documentsOf(result) as unknown as [PodTemplateSpec];
    expect(container(output, 'app').args).toEqual(['/entry', 'run']);
    expect(result.stdout.trimStart().startsWith('{')).toBe(false);
  });

  it('sets the image and keeps stdlog volumes on request', () => {
    const input = writeInput('keep.json', JSON.stringify(referenceDeployment({ label: true })));
    const template = templateOf(documentsOf(runCli(['--sidecarset', SIDECARSET, '--image', 'registry.example/tandem:9', '--keep-stdlog', input]))[0]!);
    expect(template.spec.initContainers?.[0]?.image).toBe('registry.example/tandem:9');
    expect(template.spec.volumes?.map((volume) => volume.name)).toEqual(['config', 'stdlog', 'tandem', 'tandem-state', 'tandem-logs']);
  });

  it('matches SidecarSet namespaces with --namespace', () => {
    const sidecarSet = readFileSync(SIDECARSET, 'utf8').replace('spec:\n', 'spec:\n  namespace: logging\n');
    const set = writeInput('namespaced-sidecarset.yaml', sidecarSet);
    const input = writeInput('namespaced.json', JSON.stringify(referenceDeployment({ label: true })));

    const outside = templateOf(documentsOf(runCli(['--sidecarset', set, input]))[0]!);
    const inside = templateOf(documentsOf(runCli(['--sidecarset', set, '--namespace', 'logging', input]))[0]!);
    expect(outside.spec.containers.map((entry) => entry.name)).toEqual(['echo-server']);
    expect(inside.spec.containers.map((entry) => entry.name)).toEqual(['filebeat', 'echo-server']);
  });

  it('skips empty documents', () => {
    const result = runCli(['-'], '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# nothing here\n---\n');
    expect(documentsOf(result)).toEqual([{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }]);
    expect(result.stderr).toContain('ConfigMap/a: no pod template, passed through unchanged');
  });

  it('passes custom resources through', () => {
    const widget = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec: 5 };
    const volcanoJob = { apiVersion: 'batch.volcano.sh/v1alpha1', kind: 'Job', metadata: { name: 'vj' }, spec: { tasks: [] } };
    const result = runCli(['-'], [widget, volcanoJob].map((object) => JSON.stringify(object)).join('\n---\n'));
    expect(documentsOf(result)).toEqual([widget, volcanoJob]);
  });

  it('leaves re-injected output unchanged', () => {
    const pod = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: app\n    image: app:1\n    command: ["/app"]\n';
    const once = runCli(['-'], pod);
    expect(once.status).toBe(0);
    const twice = runCli(['-'], once.stdout);
    expect(twice.status).toBe(0);
    expect(twice.stdout).toBe(once.stdout);
    expect(twice.stderr).toContain('Pod/p: already injected');
  });

  it('leaves an opted-out pod without tandem', () => {
    const deployment = referenceDeployment({ label: true });
    templateOf(deployment).metadata!.annotations!['tandem.dev/inject'] = 'disabled';
    const result = runCli(['--sidecarset', SIDECARSET, writeInput('disabled.json', JSON.stringify(deployment))]);
    const template = templateOf(documentsOf(result)[0]!);
    expect(template.spec.initContainers).toBeUndefined();
    expect(template.spec.containers.map((entry) => entry.name)).toEqual(['filebeat', 'echo-server']);
    expect(result.stderr).toContain('tandem not injected, the pod template sets tandem.dev/inject: disabled');
  });
});

describe('tandem inject errors', () => {
  it('rejects an image it cannot resolve', () => {
    const pod = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: app
    image: registry.invalid/tandem-test/never-pulled:1
    args: ["--serve"]
`;
    const result = runCli([writeInput('unresolvable.yaml', pod)]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Cannot find the ENTRYPOINT of image registry.invalid/tandem-test/never-pulled:1 for container app in Pod/p');
    expect(result.stderr).toContain("entrypoint.tandem.dev/app: '[\"/path/to/entrypoint\"]'");
  });

  it('rejects an invalid priority', () => {
    const pod = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: app
    image: app:1
    command: ["/app"]
    env:
    - name: ECI_CONTAINER_LAUNCH_PRIORITY
      value: soon
`;
    const result = runCli([writeInput('priority.yaml', pod)]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Invalid ECI_CONTAINER_LAUNCH_PRIORITY "soon" in container app of Pod/p');
  });

  it('reports every failing template', () => {
    const stream = ['a', 'b']
      .map((name) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\nspec:\n  containers:\n  - name: c\n    image: registry.invalid/x:1\n`)
      .join('---\n');
    const result = runCli([writeInput('two-failures.yaml', stream)]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('container c in Pod/a');
    expect(result.stderr).toContain('container c in Pod/b');
    expect(result.stderr).toContain('2 error(s), no output written');
  });

  it.each([
    ['plain text', 'just some text\nwith lines\n', 'found the string "just some text with lines"'],
    ['a YAML list', '- a\n- b\n', 'found a list'],
    ['a single word', 'hello\n', 'found the string "hello"'],
    ['a JSON array', '[{"apiVersion": "v1", "kind": "Pod"}]', 'found a list'],
    ['a Pod without apiVersion', 'kind: Pod\nspec: 5\n', 'apiVersion is missing'],
    ['a mapping without kind', 'apiVersion: v1\nmetadata: {name: x}\n', 'kind is missing'],
  ])('rejects %s on standard input', (_case, input, problem) => {
    const result = runCli(['-'], input);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Document 1 of 1 in standard input is not a Kubernetes object');
    expect(result.stderr).toContain(problem);
  });

  it('rejects random bytes', () => {
    // A fixed linear congruential sequence, so every run reads the same 200 bytes.
    let state = 12345;
    const bytes = Buffer.alloc(200);
    for (let index = 0; index < bytes.length; index += 1) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      bytes[index] = state >> 16;
    }
    const input = path.join(directory, 'random.bin');
    writeFileSync(input, bytes);
    const result = runCli([input]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(input);
  });

  it.each([
    ['a Pod whose spec is a number', 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: 5\n', 'Invalid Pod/p: the Pod.spec is missing or not an object'],
    ['a Pod without containers', 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n', 'Invalid Pod/p: the Pod.spec.containers is missing'],
    ['a Pod with empty containers', 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n', 'Invalid Pod/p: the Pod.spec.containers must be a non-empty list'],
    ['a Deployment without spec', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n', 'Invalid Deployment/d: spec is missing or not an object'],
    ['a Deployment whose template is a string', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: x}\n', 'Invalid Deployment/d: spec.template is missing or not an object'],
    ['a StatefulSet whose containers is a mapping', 'apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec: {template: {spec: {containers: {a: 1}}}}\n', 'Invalid StatefulSet/s: spec.template.spec.containers must be a non-empty list'],
    ['a CronJob without a job template', 'apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {schedule: "* * * * *"}\n', 'Invalid CronJob/c: spec.jobTemplate is missing or not an object'],
  ])('rejects %s', (_case, input, problem) => {
    const file = writeInput('invalid-workload.yaml', input);
    const result = runCli([file]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`Document 1 of 1 in ${file}: ${problem}`);
  });

  it('writes nothing when one document of a stream fails', () => {
    const stream = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
---
apiVersion: v1
kind: Pod
metadata:
  name: good
spec:
  containers:
  - name: app
    image: app:1
    command: ["/app"]
---
- not
- an object
---
`;
    const file = writeInput('partly-invalid.yaml', stream);
    const result = runCli([file]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`Document 3 of 4 in ${file} is not a Kubernetes object`);
    expect(result.stderr).toContain('1 error(s), no output written');
    expect(result.stderr).not.toContain('injected tandem');
  });

  it('names the document of a workload error', () => {
    const stream = ['a', 'b']
      .map((name) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\nspec:\n  containers: ${name === 'b' ? '[]' : '[{name: c, image: c:1, command: [/c]}]'}\n`)
      .join('---\n');
    const result = runCli(['-'], stream);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Document 2 of 2 in standard input: Invalid Pod/b: the Pod.spec.containers must be a non-empty list');
  });

  it('rejects a user container named tandem-init', () => {
    const pod = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  initContainers:
  - name: tandem-init
    image: busybox:1
    command: ["/bin/true"]
  containers:
  - name: app
    image: app:1
    command: ["/app"]
`;
    const file = writeInput('own-tandem-init.yaml', pod);
    const result = runCli([file]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(
      `Document 1 of 1 in ${file}: Pod/p already has a container named tandem-init in initContainers, which tandem reserves for its init container. Rename the container.`,
    );
    expect(result.stderr).not.toContain('already injected');
  });

  it('rejects a regular container named tandem-init', () => {
    const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: tandem-init
        image: app:1
        command: ["/app"]
`;
    const result = runCli(['-'], deployment);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Deployment/web already has a container named tandem-init in containers, which tandem reserves');
  });

  it('rejects a missing input file', () => {
    const result = runCli([path.join(directory, 'absent.yaml')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/Cannot read .*absent.yaml/);
  });

  it('rejects a --sidecarset file without SidecarSets', () => {
    const result = runCli(['--sidecarset', path.join(EXAMPLES, 'filebeat-config.yaml'), path.join(EXAMPLES, 'echo-server.yaml')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('filebeat-config.yaml contains no SidecarSet');
  });

  it('rejects an invalid SOURCE_DATE_EPOCH', () => {
    const result = spawnSync(process.execPath, [CLI, 'inject', '-'], { input: '', encoding: 'utf8', env: { ...process.env, SOURCE_DATE_EPOCH: 'yesterday' } });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('Invalid SOURCE_DATE_EPOCH "yesterday"');
  });
});
