import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnnotationResolver, PodmanResolver, resolveImageConfig, type ImageConfigRequest } from '../../agent/inject/image-config.js';

function request(overrides: Partial<ImageConfigRequest> = {}): ImageConfigRequest {
  return { containerName: 'web', image: 'app:1', need: 'entrypoint and cmd', annotations: {}, owner: 'Deployment/web', ...overrides };
}

describe('AnnotationResolver', () => {
  const resolver = new AnnotationResolver();

  it('reads ENTRYPOINT and CMD annotations', async () => {
    const result = await resolver.resolve(
      request({ annotations: { 'entrypoint.tandem.dev/web': '["/bin/app"]', 'cmd.tandem.dev/web': '["serve", "--port=80"]' } }),
    );
    expect(result).toEqual({
      found: true,
      config: { entrypoint: ['/bin/app'], cmd: ['serve', '--port=80'], source: 'annotations entrypoint.tandem.dev/web and cmd.tandem.dev/web' },
    });
  });

  it('treats a missing CMD annotation as empty', async () => {
    const result = await resolver.resolve(request({ annotations: { 'entrypoint.tandem.dev/web': '[]' } }));
    expect(result).toEqual({ found: true, config: { entrypoint: [], cmd: [], source: 'annotation entrypoint.tandem.dev/web' } });
  });

  it('misses without the ENTRYPOINT annotation', async () => {
    const result = await resolver.resolve(request({ annotations: { 'cmd.tandem.dev/web': '["serve"]' } }));
    expect(result.found).toBe(false);
    expect(result.found ? '' : result.reason).toContain('the ENTRYPOINT annotation is needed too');
  });

  it('ignores annotations of other containers', async () => {
    const result = await resolver.resolve(request({ annotations: { 'entrypoint.tandem.dev/other': '["/x"]' } }));
    expect(result.found).toBe(false);
  });

  it.each(['/bin/app', '{"a":1}', '[1, 2]', '["unterminated'])('rejects %j', async (value) => {
    await expect(resolver.resolve(request({ annotations: { 'entrypoint.tandem.dev/web': value } }))).rejects.toThrow(
      /Invalid annotation entrypoint.tandem.dev\/web in Deployment\/web.*not a JSON array of strings/,
    );
  });
});

describe('PodmanResolver with a stand-in podman', () => {
  let directory: string;
  let program: string;
  let callLog: string;

  beforeAll(() => {
    directory = mkdtempSync(path.join(tmpdir(), 'tandem-podman-'));
    program = path.join(directory, 'podman');
    callLog = path.join(directory, 'calls.log');
    // Prints what `podman image inspect --format json -- IMAGE` prints for two known images.
    writeFileSync(
      program,
      `#!/bin/sh
echo "$*" >> '${callLog}'
case "$6" in
  app:1) echo '[{"Config":{"Entrypoint":["/bin/app"],"Cmd":["serve"]}}]' ;;
  shell:1) echo '[{"Config":{"Entrypoint":null,"Cmd":["sh"]}}]' ;;
  *) echo '[]'; echo "Error: inspecting object: $6: image not known" >&2; exit 125 ;;
esac
`,
    );
    chmodSync(program, 0o755);
  });

  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('reads Entrypoint and Cmd', async () => {
    const result = await new PodmanResolver(program).resolve(request());
    expect(result).toEqual({ found: true, config: { entrypoint: ['/bin/app'], cmd: ['serve'], source: `local image store (${program})` } });
  });

  it('reads a null Entrypoint as empty', async () => {
    const result = await new PodmanResolver(program).resolve(request({ image: 'shell:1' }));
    expect(result.found).toBe(true);
    const config = result.found ? result.config : undefined;
    expect(config?.entrypoint).toEqual([]);
    expect(config?.cmd).toEqual(['sh']);
  });

  it('passes the image after --', async () => {
    writeFileSync(callLog, '');
    await new PodmanResolver(program).resolve(request({ image: '--help' }));
    expect(readFileSync(callLog, 'utf8')).toBe('image inspect --format json -- --help\n');
  });

  it('inspects each image once', async () => {
    writeFileSync(callLog, '');
    const resolver = new PodmanResolver(program);
    await resolver.resolve(request({ containerName: 'a' }));
    await resolver.resolve(request({ containerName: 'b' }));
    expect(readFileSync(callLog, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('reports an image that is not stored', async () => {
    const result = await new PodmanResolver(program).resolve(request({ image: 'absent:1' }));
    expect(result).toEqual({ found: false, reason: `\`${program} image inspect absent:1\` failed: Error: inspecting object: absent:1: image not known` });
  });

  it('tolerates a missing podman', async () => {
    const missing = path.join(directory, 'no-such-podman');
    const result = await new PodmanResolver(missing).resolve(request());
    expect(result).toEqual({ found: false, reason: `${missing} is not installed, so the local image store was not searched` });
  });
});

function podmanHasBusybox(): boolean {
  try {
    execFileSync('podman', ['image', 'exists', 'docker.io/library/busybox'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!podmanHasBusybox())('PodmanResolver with the real podman', () => {
  it('reads busybox from the local store', async () => {
    const result = await new PodmanResolver().resolve(request({ image: 'docker.io/library/busybox' }));
    expect(result.found).toBe(true);
    const config = result.found ? result.config : undefined;
    expect(config?.entrypoint).toEqual([]);
    expect(config?.cmd).toEqual(['sh']);
  });
});

describe('resolveImageConfig', () => {
  it('takes the first resolver that finds a config', async () => {
    const config = await resolveImageConfig(request({ annotations: { 'entrypoint.tandem.dev/web': '["/a"]' } }), [
      new AnnotationResolver(),
      new PodmanResolver('/nonexistent/podman'),
    ]);
    expect(config.entrypoint).toEqual(['/a']);
  });

  it('names the container, the image and the fix', async () => {
    const failure = resolveImageConfig(request({ image: 'registry.example/app:2', need: 'entrypoint' }), [
      new AnnotationResolver(),
      new PodmanResolver('/nonexistent/podman'),
    ]);
    await expect(failure).rejects.toThrow(/ENTRYPOINT of image registry.example\/app:2 for container web in Deployment\/web/);
    await expect(failure).rejects.toThrow(/no annotation entrypoint.tandem.dev\/web; \/nonexistent\/podman is not installed/);
    await expect(failure).rejects.toThrow(/Add the pod template annotation entrypoint.tandem.dev\/web: '\["\/path\/to\/entrypoint"\]'/);
  });
});
