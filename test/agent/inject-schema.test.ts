import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { Pod } from 'kubernetes-models/v1';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifests } from '../../agent/inject/io.js';
import type { KubeObject, PodTemplateSpec } from '../../agent/inject/k8s.js';

// Every object `tandem inject` writes is checked against the Kubernetes OpenAPI schema that the
// kubernetes-models package (a devDependency) carries, through each model class's validate().

const CLI = path.resolve('dist/agent/cli.js');
const EXAMPLES = path.resolve('examples/reference');
const SIDECARSET = path.join(EXAMPLES, 'sidecarset.yaml');

interface Validatable {
  validate(): void;
}

type ModelClass = new (data: never) => Validatable;

const MODELS: Record<string, ModelClass> = {
  'v1/Pod': Pod as unknown as ModelClass,
  'apps/v1/Deployment': Deployment as unknown as ModelClass,
  'apps/v1/StatefulSet': StatefulSet as unknown as ModelClass,
  'apps/v1/DaemonSet': DaemonSet as unknown as ModelClass,
  'batch/v1/Job': Job as unknown as ModelClass,
  'batch/v1/CronJob': CronJob as unknown as ModelClass,
};

let directory: string;

// Runs `tandem inject --no-registry` and returns the output objects, failing on any error.
function inject(args: string[], input: string): KubeObject[] {
  const file = path.join(directory, 'input.yaml');
  writeFileSync(file, input);
  const result = spawnSync(process.execPath, [CLI, 'inject', '--no-registry', ...args, file], { encoding: 'utf8', timeout: 60_000 });
  expect(result.stderr).not.toContain('error');
  expect(result.status).toBe(0);
  return parseManifests(result.stdout, 'CLI output') as KubeObject[];
}

// Validates an object with the model class of its apiVersion and kind, and throws the schema
// errors when it does not validate.
function validate(object: KubeObject): void {
  const key = `${String(object.apiVersion)}/${String(object.kind)}`;
  const Model = MODELS[key];
  if (Model === undefined) {
    throw new Error(`No schema model for ${key}. Add its kubernetes-models class to MODELS.`);
  }
  new Model(object as never).validate();
}

function injectedTemplate(object: KubeObject): PodTemplateSpec {
  if (object.kind === 'Pod') {
    return object as unknown as PodTemplateSpec;
  }
  if (object.kind === 'CronJob') {
    return (object.spec as { jobTemplate: { spec: { template: PodTemplateSpec } } }).jobTemplate.spec.template;
  }
  return (object.spec as { template: PodTemplateSpec }).template;
}

function expectInjected(object: KubeObject): void {
  expect(injectedTemplate(object).spec.initContainers?.[0]?.name).toBe('tandem-init');
}

// The reference Deployment with the label the SidecarSet selects and the image configs as
// annotations, so that no registry or local image is read.
function referenceDeployment(): string {
  const deployment = parse(readFileSync(path.join(EXAMPLES, 'echo-server.yaml'), 'utf8')) as KubeObject;
  const template = injectedTemplate(deployment);
  template.metadata!.labels!['serverless.alibabacloud.com/virtual-node'] = 'true';
  template.metadata!.annotations = {
    'entrypoint.tandem.dev/echo-server': '["/http-echo"]',
    'entrypoint.tandem.dev/filebeat': '[]',
  };
  return JSON.stringify(deployment);
}

const POD = `apiVersion: v1
kind: Pod
metadata:
  name: single
spec:
  containers:
  - name: app
    image: registry.example/app:1
    command: ["/app", "--port=8080"]
    ports:
    - containerPort: 8080
`;

const JOB = `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: registry.example/migrate:1
        command: ["/migrate"]
      - name: proxy
        image: registry.example/proxy:1
        command: ["/proxy"]
        env:
        - name: ECI_SIDECAR_CONTAINER
          value: "true"
`;

const CRON_JOB = `apiVersion: batch/v1
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
        spec:
          restartPolicy: OnFailure
          containers:
          - name: report
            image: registry.example/report:3
`;

const STATEFUL_SET = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      initContainers:
      - name: prepare
        image: registry.example/db:5
        command: ["/prepare"]
        volumeMounts:
        - name: data
          mountPath: /var/lib/db
      containers:
      - name: db
        image: registry.example/db:5
        command: ["/db", "--data=/var/lib/db"]
        volumeMounts:
        - name: data
          mountPath: /var/lib/db
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
`;

const DAEMON_SET = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: monitoring
spec:
  selector:
    matchLabels:
      app: node-agent
  template:
    metadata:
      labels:
        app: node-agent
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: agent
        image: registry.example/agent:2
        command: ["/agent"]
        securityContext:
          runAsNonRoot: true
          allowPrivilegeEscalation: false
          capabilities:
            drop: ["ALL"]
`;

beforeAll(() => {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing. Run \`npm run build\` first.`);
  }
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-inject-schema-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('tandem inject output against the OpenAPI schema', () => {
  // The reference SidecarSet mounts the ConfigMap `kube-system/filebeat-config`, a platform
  // extension that names a ConfigMap in another namespace. The schema types configMap.name as a
  // plain string without a name format, so it validates and this object is checked whole.
  it('validates the reference Deployment with its SidecarSet', () => {
    const [deployment] = inject(['--sidecarset', SIDECARSET], referenceDeployment());
    expectInjected(deployment!);
    expect(injectedTemplate(deployment!).spec.containers.map((container) => container.name)).toEqual(['filebeat', 'echo-server']);
    expect(() => validate(deployment!)).not.toThrow();
  });

  it.each([
    ['Pod', POD],
    ['Job', JOB],
    ['CronJob', CRON_JOB],
    ['StatefulSet', STATEFUL_SET],
    ['DaemonSet', DAEMON_SET],
  ])('validates an injected %s', (kind, input) => {
    const [object] = inject([], input);
    expect(object!.kind).toBe(kind);
    expectInjected(object!);
    expect(() => validate(object!)).not.toThrow();
  });

  it('validates a stream of every kind', () => {
    const objects = inject([], [POD, JOB, CRON_JOB, STATEFUL_SET, DAEMON_SET].join('---\n'));
    expect(objects.map((object) => object.kind)).toEqual(['Pod', 'Job', 'CronJob', 'StatefulSet', 'DaemonSet']);
    for (const object of objects) {
      expectInjected(object);
      expect(() => validate(object), String(object.kind)).not.toThrow();
    }
  });

  it('rejects a broken injected object', () => {
    const [pod] = inject([], POD);
    const init = injectedTemplate(pod!).spec.initContainers![0]!;
    (init.volumeMounts![0] as unknown as Record<string, unknown>).mountPath = 42;
    expect(() => validate(pod!)).toThrow(/mountPath must be string/);
  });
});
