import jsonPatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { AnnotationResolver } from '../../agent/inject/image-config.js';
import type { Container, KubeObject, PodTemplateSpec, Volume } from '../../agent/inject/k8s.js';
import { injectTandem } from '../../agent/inject/transform.js';
import { describePod, mutatePod, type PodMutationOptions } from '../../agent/webhook/mutate.js';
import { removeTandem, unwrappedContainers } from '../../agent/webhook/reinvocation.js';
import { parsePodSpec } from '../../supervisor/protocol/pod.js';

const OPTIONS: PodMutationOptions = { image: 'localhost/tandem:0.1.0', keepStdlog: false, resolvers: [new AnnotationResolver()] };

function pod(spec: PodTemplateSpec['spec'], annotations: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', annotations }, spec };
}

function templateOf(object: KubeObject): PodTemplateSpec {
  return { metadata: object.metadata as PodTemplateSpec['metadata'], spec: object.spec as PodTemplateSpec['spec'] };
}

async function patched(object: KubeObject): Promise<KubeObject> {
  const mutation = await mutatePod(object, 'shop', OPTIONS);
  return jsonPatch.applyPatch(structuredClone(object), mutation.patch, true, false).newDocument;
}

const STDLOG: Volume = { name: 'stdlog', csi: { driver: 'stdlogplugin.csi.alibabacloud.com' } };

const FILEBEAT: Container = {
  name: 'filebeat',
  image: 'busybox',
  args: ['/bin/sh', '-c', 'cat /etc/filebeat.yml && sleep 36000'],
  env: [
    { name: 'ECI_SIDECAR_CONTAINER', value: 'true' },
    { name: 'IS_INJECTED', value: 'true' },
  ],
  volumeMounts: [
    { name: 'config', mountPath: '/etc/filebeat.yml', readOnly: true, subPath: 'filebeat.yml' },
    { name: 'stdlog', mountPath: '/var/log/std', readOnly: true },
  ],
};

// Pods that exercise every part of the layout injectTandem writes: image configs with `$` that
// need escaping, existing init containers and volumes, stdlog mounts, a container with both
// command and args, and one without volume mounts.
const CASES: { name: string; pod: KubeObject }[] = [
  {
    name: 'image config with dollar signs',
    pod: pod({ containers: [{ name: 'app', image: 'example/app', args: ['--price=$(PRICE)'] }] }, { 'entrypoint.tandem.dev/app': '["/bin/app", "$(HOME)"]' }),
  },
  {
    name: 'init containers and volumes',
    pod: pod({
      initContainers: [{ name: 'migrate', image: 'example/migrate', command: ['migrate'] }],
      containers: [{ name: 'app', image: 'example/app', command: ['/app'], args: ['-v'], volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
      volumes: [{ name: 'data', emptyDir: {} }],
      restartPolicy: 'Never',
    }),
  },
  {
    name: 'stdlog volume',
    pod: pod({
      containers: [{ name: 'app', image: 'example/app', command: ['/app'], volumeMounts: [{ name: 'stdlog', mountPath: '/var/log/std' }] }],
      volumes: [STDLOG],
    }),
  },
];

describe('removeTandem', () => {
  for (const { name, pod: original } of CASES) {
    it(`reinjects to the same pod: ${name}`, async () => {
      const injected = await patched(original);
      const stripped = removeTandem(templateOf(injected));
      const again = injectTandem(stripped, { image: OPTIONS.image, keepStdlog: false, imageConfigs: new Map(), owner: 'Pod/web' });

      expect(again.status).toBe('injected');
      expect(again.template.spec).toEqual(injected.spec);
    });
  }

  it('keeps containers that are not wrapped', async () => {
    const injected = await patched(CASES[1]!.pod);
    const template = templateOf(injected);
    template.spec.containers.push(structuredClone(FILEBEAT));

    const stripped = removeTandem(template);

    expect(unwrappedContainers(template)).toEqual(['filebeat']);
    expect(stripped.spec.containers.at(-1)).toEqual(FILEBEAT);
    expect(stripped.spec.initContainers?.map((container) => container.name)).toEqual(['migrate']);
  });
});

describe('mutatePod reinvocation', () => {
  // A later webhook (OpenKruise's SidecarSet webhook) appends a container and its volumes to a pod
  // that tandem already injected. The second call must give the pod that a single injection of the
  // whole pod gives.
  for (const { name, pod: original } of CASES) {
    it(`wraps a container added later: ${name}`, async () => {
      const withSidecar = structuredClone(original);
      const spec = withSidecar.spec as PodTemplateSpec['spec'];
      spec.containers.push(structuredClone(FILEBEAT));
      spec.volumes = [...(spec.volumes ?? []), { name: 'config', configMap: { name: 'filebeat' } }, ...(spec.volumes?.some((volume) => volume.name === 'stdlog') ? [] : [STDLOG])];
      (withSidecar.metadata as { annotations: Record<string, string> }).annotations['entrypoint.tandem.dev/filebeat'] = '[]';
      const expected = await patched(withSidecar);

      const injected = await patched(original);
      const afterKruise = structuredClone(injected);
      const laterSpec = afterKruise.spec as PodTemplateSpec['spec'];
      laterSpec.containers.push(structuredClone(FILEBEAT));
      laterSpec.volumes = [...(laterSpec.volumes ?? []), { name: 'config', configMap: { name: 'filebeat' } }];
      // Kruise adds a SidecarSet volume when the pod has none of that name, and the injection
      // removed the pod's own stdlog volume.
      if (!laterSpec.volumes.some((volume) => volume.name === 'stdlog')) {
        laterSpec.volumes.push(STDLOG);
      }
      (afterKruise.metadata as { annotations: Record<string, string> }).annotations['entrypoint.tandem.dev/filebeat'] = '[]';

      const mutation = await mutatePod(afterKruise, 'shop', OPTIONS);
      const result = jsonPatch.applyPatch(structuredClone(afterKruise), mutation.patch, true, false).newDocument;

      expect(mutation.decision).toBe('reinjected');
      expect((mutation as { addedContainers?: string[] }).addedContainers).toEqual(['filebeat']);
      expect(result).toEqual(expected);
    });
  }

  it('leaves a fully injected pod alone', async () => {
    const injected = await patched(CASES[0]!.pod);

    const mutation = await mutatePod(injected, 'shop', OPTIONS);

    expect(mutation.decision).toBe('already injected');
    expect(mutation.patch).toEqual([]);
  });
});

// The init container warning comes from injectTandem; these tests check that the webhook passes it on.
describe('mutatePod warnings', () => {
  const sidecar: Container = { name: 'proxy', image: 'example/proxy', command: ['/proxy'], env: [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }] };
  const app: Container = { name: 'app', image: 'example/app', command: ['/app'] };

  it('warns when init containers run before sidecars', async () => {
    const mutation = await mutatePod(pod({ initContainers: [{ name: 'fetch', image: 'example/fetch', command: ['fetch'] }], containers: [app, sidecar] }), 'shop', OPTIONS);

    expect(mutation.warnings).toHaveLength(1);
    expect(mutation.warnings[0]).toContain('Pod/web in namespace shop: init containers fetch run before sidecars proxy start, so they cannot use them.');
  });

  it('does not count native sidecars', async () => {
    const native: Container = { name: 'mesh', image: 'example/mesh', command: ['/mesh'], restartPolicy: 'Always' };

    const mutation = await mutatePod(pod({ initContainers: [native], containers: [app, sidecar] }), 'shop', OPTIONS);

    expect(mutation.warnings).toEqual([]);
  });

  it('does not warn without sidecars', async () => {
    const mutation = await mutatePod(pod({ initContainers: [{ name: 'fetch', image: 'example/fetch', command: ['fetch'] }], containers: [app] }), 'shop', OPTIONS);

    expect(mutation.warnings).toEqual([]);
  });

  it('reports the stdlog replacement', async () => {
    const mutation = await mutatePod(CASES[2]!.pod, 'shop', OPTIONS);

    expect(mutation.warnings).toEqual([expect.stringContaining("stdlog CSI volume stdlog replaced by tandem's volume tandem-logs")]);
  });
});

describe('mutatePod pod spec', () => {
  it('gives Kruise-injected containers the sidecar role', async () => {
    const object = pod({ containers: [{ name: 'app', image: 'example/app', command: ['/app'] }, FILEBEAT], volumes: [STDLOG, { name: 'config', configMap: { name: 'filebeat' } }] }, {
      'entrypoint.tandem.dev/filebeat': '[]',
    });

    const result = await patched(object);
    const init = (result.spec as PodTemplateSpec['spec']).initContainers![0]!;
    const podSpec = parsePodSpec(init.command![4]!, 'tandem-init');

    expect(podSpec.containers.map(({ name, role }) => ({ name, role }))).toEqual([
      { name: 'app', role: 'app' },
      { name: 'filebeat', role: 'sidecar' },
    ]);
  });
});

describe('describePod', () => {
  it('names a pod of a controller', () => {
    const object: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'web-5d9c4-', ownerReferences: [{ kind: 'ReplicaSet', name: 'web-5d9c4', controller: true }] },
      spec: { containers: [] },
    };

    expect(describePod(object, 'shop')).toBe('Pod/web-5d9c4-<generated> in namespace shop (created by ReplicaSet/web-5d9c4)');
  });

  it('names a pod by its name', () => {
    expect(describePod(pod({ containers: [] }), 'shop')).toBe('Pod/web in namespace shop');
  });
});
