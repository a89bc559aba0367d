import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import jsonPatch, { type Operation } from 'fast-json-patch';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { LabelSelector } from '../../agent/inject/k8s.js';
import { matchesLabelSelector, validateLabelSelector } from '../../agent/inject/sidecarset/selector.js';
import { VERSION } from '../../agent/version.js';

// kubectl and kustomize are not installed here, so these tests check what they would: that every
// file parses, that every object is complete, and that the objects refer to each other correctly.
const DEPLOY = path.resolve('deploy');
const CLI = path.resolve('dist/agent/cli.js');

type KubeObject = Record<string, any>;

function yamlFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((name) => {
    const file = path.join(directory, name);
    if (statSync(file).isDirectory()) {
      return yamlFiles(file);
    }
    return name.endsWith('.yaml') ? [file] : [];
  });
}

function parseFile(file: string): KubeObject[] {
  const documents = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const document of documents) {
    expect(document.errors, `YAML errors in ${file}`).toEqual([]);
  }
  return documents.map((document) => document.toJS() as KubeObject).filter((value) => value !== null);
}

function objectsIn(...relative: string[]): KubeObject[] {
  return relative.flatMap((file) => parseFile(path.join(DEPLOY, file)));
}

function find(objects: KubeObject[], kind: string, name: string): KubeObject {
  const found = objects.find((object) => object.kind === kind && object.metadata?.name === name);
  expect(found, `${kind}/${name}`).toBeDefined();
  return found!;
}

const isKustomization = (file: string) => path.basename(file) === 'kustomization.yaml';
const manifestFiles = yamlFiles(DEPLOY).filter((file) => !isKustomization(file));
const kustomizations = yamlFiles(DEPLOY).filter(isKustomization);

const base = objectsIn(...(parseFile(path.join(DEPLOY, 'base/kustomization.yaml'))[0]!.resources as string[]).map((file) => `base/${file}`));
const certManager = objectsIn('cert-manager/certificate.yaml');
const deployment = find(base, 'Deployment', 'tandem-webhook');
const service = find(base, 'Service', 'tandem-webhook');
const configuration = find(base, 'MutatingWebhookConfiguration', 'tandem-webhook');
const [webhook] = configuration.webhooks as KubeObject[];
const container = deployment.spec.template.spec.containers[0] as KubeObject;

describe('deploy manifests', () => {
  it('has files to check', () => {
    expect(manifestFiles.length).toBeGreaterThanOrEqual(8);
    expect(kustomizations.length).toBe(3);
  });

  for (const file of manifestFiles) {
    it(`completes every object in ${path.relative(DEPLOY, file)}`, () => {
      const objects = parseFile(file);

      expect(objects.length).toBeGreaterThan(0);
      for (const object of objects) {
        expect(typeof object.apiVersion, `apiVersion in ${file}`).toBe('string');
        expect(typeof object.kind, `kind in ${file}`).toBe('string');
        expect(typeof object.metadata?.name, `metadata.name of a ${object.kind} in ${file}`).toBe('string');
        expect(object.metadata.name).not.toBe('');
      }
    });
  }

  for (const file of kustomizations) {
    it(`finds every resource of ${path.relative(DEPLOY, file)}`, () => {
      const [kustomization] = parseFile(file);

      expect(kustomization!.apiVersion).toMatch(/^kustomize\.config\.k8s\.io\/v1(beta1|alpha1)$/);
      expect(['Kustomization', 'Component']).toContain(kustomization!.kind);
      for (const resource of (kustomization!.resources ?? []) as string[]) {
        const target = path.resolve(path.dirname(file), resource);
        const found = existsSync(target) && (statSync(target).isFile() || existsSync(path.join(target, 'kustomization.yaml')));
        expect(found, `resource ${resource} of ${file}`).toBe(true);
      }
    });
  }

  it('keeps the single-file manifest equal to the base', () => {
    expect(objectsIn('tandem-webhook.yaml')).toEqual(base);
  });
});

describe('deploy webhook configuration', () => {
  it('calls the Service on /mutate', () => {
    const port = (service.spec.ports as KubeObject[]).find((entry) => entry.port === webhook!.clientConfig.service.port);

    expect(webhook!.clientConfig.service).toEqual({ name: service.metadata.name, namespace: service.metadata.namespace, path: '/mutate', port: 443 });
    expect(port?.targetPort).toBe('https');
  });

  it('sets the required admission fields', () => {
    expect(webhook).toMatchObject({ admissionReviewVersions: ['v1'], sideEffects: 'None', timeoutSeconds: 5, reinvocationPolicy: 'IfNeeded' });
    expect(['Fail', 'Ignore']).toContain(webhook!.failurePolicy);
    expect(webhook!.rules).toEqual([{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }]);
  });

  const namespaceCases: [string, Record<string, string>, boolean][] = [
    ['default', { 'kubernetes.io/metadata.name': 'default' }, true],
    ['tandem-system', { 'kubernetes.io/metadata.name': 'tandem-system' }, false],
    ['kube-system', { 'kubernetes.io/metadata.name': 'kube-system' }, false],
    ['opted out', { 'kubernetes.io/metadata.name': 'legacy', 'tandem.dev/inject': 'disabled' }, false],
    ['opted in', { 'kubernetes.io/metadata.name': 'jobs', 'tandem.dev/inject': 'enabled' }, true],
  ];
  for (const [name, labels, expected] of namespaceCases) {
    it(`selects namespace ${name}: ${expected}`, () => {
      validateLabelSelector(webhook!.namespaceSelector, 'namespaceSelector');

      expect(matchesLabelSelector(webhook!.namespaceSelector as LabelSelector, labels)).toBe(expected);
    });
  }

  it("skips the webhook's own pods", () => {
    validateLabelSelector(webhook!.objectSelector, 'objectSelector');

    expect(matchesLabelSelector(webhook!.objectSelector as LabelSelector, deployment.spec.template.metadata.labels)).toBe(false);
    expect(matchesLabelSelector(webhook!.objectSelector as LabelSelector, { app: 'echo-server' })).toBe(true);
  });

  it('switches to Ignore with the component', () => {
    const [component] = parseFile(path.join(DEPLOY, 'components/failure-policy-ignore/kustomization.yaml'));
    const [entry] = component!.patches as KubeObject[];
    const operations = parseAllDocuments(entry!.patch as string)[0]!.toJS() as Operation[];

    const patched = jsonPatch.applyPatch(structuredClone(configuration), operations, true, false).newDocument;

    expect(entry!.target).toMatchObject({ kind: 'MutatingWebhookConfiguration', name: configuration.metadata.name });
    expect(patched.webhooks[0].failurePolicy).toBe('Ignore');
  });
});

describe('deploy workload', () => {
  it('selects the pods by their labels', () => {
    const labels = deployment.spec.template.metadata.labels as Record<string, string>;
    const disruptionBudget = find(base, 'PodDisruptionBudget', 'tandem-webhook');

    expect(matchesLabelSelector({ matchLabels: service.spec.selector }, labels)).toBe(true);
    expect(matchesLabelSelector(deployment.spec.selector, labels)).toBe(true);
    expect(matchesLabelSelector(disruptionBudget.spec.selector, labels)).toBe(true);
    expect(disruptionBudget.spec.minAvailable).toBe(1);
    expect(deployment.spec.replicas).toBe(2);
  });

  it('runs the webhook with options the CLI accepts', () => {
    const help = spawnSync(process.execPath, [CLI, 'webhook', '--help'], { encoding: 'utf8' }).stdout;
    const args = container.args as string[];

    expect(args[0]).toBe('webhook');
    for (const arg of args.slice(1)) {
      expect(help, `option ${arg}`).toContain(arg.split('=')[0]);
    }
    expect(container.image).toBe(`localhost/tandem:${VERSION}`);
    expect(args).toContain(`--image=${container.image}`);
    expect(args).toContain(`--port=${container.ports[0].containerPort}`);
  });

  it('probes /readyz and /healthz over HTTPS', () => {
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'https', scheme: 'HTTPS' });
    expect(container.ports[0].name).toBe('https');
  });

  it('mounts the TLS Secret where the options point', () => {
    const mount = (container.volumeMounts as KubeObject[]).find((entry) => entry.name === 'tls')!;
    const volume = (deployment.spec.template.spec.volumes as KubeObject[]).find((entry) => entry.name === 'tls')!;
    const args = container.args as string[];

    expect(mount.subPath).toBeUndefined();
    expect(args).toContain(`--tls-cert=${mount.mountPath}/tls.crt`);
    expect(args).toContain(`--tls-key=${mount.mountPath}/tls.key`);
    expect(volume.secret.secretName).toBe('tandem-webhook-tls');
  });

  it('meets the restricted Pod Security Standard', () => {
    const pod = deployment.spec.template.spec;

    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(container.resources.requests).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(pod.topologySpreadConstraints.length).toBeGreaterThan(0);
  });
});

describe('deploy cert-manager variant', () => {
  const serving = certManager.find((object) => object.kind === 'Certificate' && object.spec.secretName === 'tandem-webhook-tls')!;
  const [overlay] = parseFile(path.join(DEPLOY, 'cert-manager/kustomization.yaml'));

  it('issues the Secret the Deployment mounts', () => {
    expect(serving).toBeDefined();
    expect(serving.spec.dnsNames).toEqual([
      `${service.metadata.name}.${service.metadata.namespace}.svc`,
      `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`,
    ]);
  });

  it('chains the issuers', () => {
    const issuer = find(certManager, 'Issuer', serving.spec.issuerRef.name);
    const ca = certManager.find((object) => object.kind === 'Certificate' && object.spec.secretName === issuer.spec.ca.secretName)!;

    expect(ca.spec.isCA).toBe(true);
    expect(find(certManager, 'Issuer', ca.spec.issuerRef.name).spec.selfSigned).toEqual({});
  });

  it('injects the CA of the serving certificate', () => {
    const [entry] = overlay!.patches as KubeObject[];
    const patch = parseAllDocuments(entry!.patch as string)[0]!.toJS() as KubeObject;

    expect(overlay!.resources).toEqual(['../base', 'certificate.yaml']);
    expect(entry!.target).toMatchObject({ kind: 'MutatingWebhookConfiguration', name: configuration.metadata.name });
    expect(patch.metadata.annotations['cert-manager.io/inject-ca-from']).toBe(`${serving.metadata.namespace}/${serving.metadata.name}`);
  });
});
