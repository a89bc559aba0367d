/**
 * Encodes a SidecarContainer the way Go's encoding/json marshals Kruise's `SidecarContainer`
 * struct, so the SidecarSet hash matches the one Kruise computes. Go writes struct fields in
 * declaration order and omits `omitempty` fields that contain a zero value, except structs. It
 * writes the zero value of other missing fields and sorts map keys. It drops fields the struct
 * does not declare, and escapes `<`, `>`, `&`, U+2028 and U+2029 in strings.
 *
 * Field order follows k8s.io/api/core/v1 types.go and Kruise's apis/apps/v1alpha1/sidecarset_types.go.
 * NOTE: resource quantities are written as given. Go writes them in canonical form (`0.5` becomes
 * `500m`), so a SidecarSet with non-canonical quantities gets a different hash than in Kruise.
 */

type GoType =
  | { kind: 'string' | 'int' | 'bool' | 'intOrString' | 'quantity' }
  | { kind: 'struct'; fields: GoField[] }
  | { kind: 'slice'; element: GoType }
  | { kind: 'map'; value: GoType };

interface GoField {
  name: string;
  type: GoType;
  /** The `omitempty` tag option. */
  omitEmpty: boolean;
  /** A pointer field: written whenever it is set, even to a zero value. */
  pointer: boolean;
}

const STRING: GoType = { kind: 'string' };
const INT: GoType = { kind: 'int' };
const BOOL: GoType = { kind: 'bool' };
const INT_OR_STRING: GoType = { kind: 'intOrString' };
const QUANTITY: GoType = { kind: 'quantity' };

const struct = (...fields: GoField[]): GoType => ({ kind: 'struct', fields });
const slice = (element: GoType): GoType => ({ kind: 'slice', element });
const map = (value: GoType): GoType => ({ kind: 'map', value });
/** A field without omitempty. */
const plain = (name: string, type: GoType): GoField => ({ name, type, omitEmpty: false, pointer: false });
/** A value field with omitempty. */
const optional = (name: string, type: GoType): GoField => ({ name, type, omitEmpty: true, pointer: false });
/** A pointer field with omitempty. */
const pointer = (name: string, type: GoType): GoField => ({ name, type, omitEmpty: true, pointer: true });

const OBJECT_FIELD_SELECTOR = struct(optional('apiVersion', STRING), plain('fieldPath', STRING));
const KEY_SELECTOR = struct(optional('name', STRING), plain('key', STRING), pointer('optional', BOOL));
const ENV_SOURCE = struct(optional('name', STRING), pointer('optional', BOOL));
const HTTP_GET = struct(
  optional('path', STRING),
  plain('port', INT_OR_STRING),
  optional('host', STRING),
  optional('scheme', STRING),
  optional('httpHeaders', slice(struct(plain('name', STRING), plain('value', STRING)))),
);
const EXEC = struct(optional('command', slice(STRING)));
const TCP_SOCKET = struct(plain('port', INT_OR_STRING), optional('host', STRING));

const PROBE = struct(
  pointer('exec', EXEC),
  pointer('httpGet', HTTP_GET),
  pointer('tcpSocket', TCP_SOCKET),
  pointer('grpc', struct(plain('port', INT), pointer('service', STRING))),
  optional('initialDelaySeconds', INT),
  optional('timeoutSeconds', INT),
  optional('periodSeconds', INT),
  optional('successThreshold', INT),
  optional('failureThreshold', INT),
  pointer('terminationGracePeriodSeconds', INT),
);

const LIFECYCLE_HANDLER = struct(
  pointer('exec', EXEC),
  pointer('httpGet', HTTP_GET),
  pointer('tcpSocket', TCP_SOCKET),
  pointer('sleep', struct(plain('seconds', INT))),
);

const PROFILE = struct(plain('type', STRING), pointer('localhostProfile', STRING));

const SECURITY_CONTEXT = struct(
  pointer('capabilities', struct(optional('add', slice(STRING)), optional('drop', slice(STRING)))),
  pointer('privileged', BOOL),
  pointer('seLinuxOptions', struct(optional('user', STRING), optional('role', STRING), optional('type', STRING), optional('level', STRING))),
  pointer(
    'windowsOptions',
    struct(pointer('gmsaCredentialSpecName', STRING), pointer('gmsaCredentialSpec', STRING), pointer('runAsUserName', STRING), pointer('hostProcess', BOOL)),
  ),
  pointer('runAsUser', INT),
  pointer('runAsGroup', INT),
  pointer('runAsNonRoot', BOOL),
  pointer('readOnlyRootFilesystem', BOOL),
  pointer('allowPrivilegeEscalation', BOOL),
  pointer('procMount', STRING),
  pointer('seccompProfile', PROFILE),
  pointer('appArmorProfile', PROFILE),
);

const SIDECAR_CONTAINER = struct(
  // core/v1 Container, embedded inline.
  plain('name', STRING),
  optional('image', STRING),
  optional('command', slice(STRING)),
  optional('args', slice(STRING)),
  optional('workingDir', STRING),
  optional(
    'ports',
    slice(struct(optional('name', STRING), optional('hostPort', INT), plain('containerPort', INT), optional('protocol', STRING), optional('hostIP', STRING))),
  ),
  optional('envFrom', slice(struct(optional('prefix', STRING), pointer('configMapRef', ENV_SOURCE), pointer('secretRef', ENV_SOURCE)))),
  optional(
    'env',
    slice(
      struct(
        plain('name', STRING),
        optional('value', STRING),
        pointer(
          'valueFrom',
          struct(
            pointer('fieldRef', OBJECT_FIELD_SELECTOR),
            pointer('resourceFieldRef', struct(optional('containerName', STRING), plain('resource', STRING), optional('divisor', QUANTITY))),
            pointer('configMapKeyRef', KEY_SELECTOR),
            pointer('secretKeyRef', KEY_SELECTOR),
          ),
        ),
      ),
    ),
  ),
  // A struct with omitempty is still written by Go, so resources always appears.
  plain(
    'resources',
    struct(optional('limits', map(QUANTITY)), optional('requests', map(QUANTITY)), optional('claims', slice(struct(plain('name', STRING), optional('request', STRING))))),
  ),
  optional('resizePolicy', slice(struct(plain('resourceName', STRING), plain('restartPolicy', STRING)))),
  pointer('restartPolicy', STRING),
  optional(
    'volumeMounts',
    slice(
      struct(
        plain('name', STRING),
        optional('readOnly', BOOL),
        pointer('recursiveReadOnly', STRING),
        plain('mountPath', STRING),
        optional('subPath', STRING),
        pointer('mountPropagation', STRING),
        optional('subPathExpr', STRING),
      ),
    ),
  ),
  optional('volumeDevices', slice(struct(plain('name', STRING), plain('devicePath', STRING)))),
  pointer('livenessProbe', PROBE),
  pointer('readinessProbe', PROBE),
  pointer('startupProbe', PROBE),
  pointer('lifecycle', struct(pointer('postStart', LIFECYCLE_HANDLER), pointer('preStop', LIFECYCLE_HANDLER), optional('stopSignal', STRING))),
  optional('terminationMessagePath', STRING),
  optional('terminationMessagePolicy', STRING),
  optional('imagePullPolicy', STRING),
  pointer('securityContext', SECURITY_CONTEXT),
  optional('stdin', BOOL),
  optional('stdinOnce', BOOL),
  optional('tty', BOOL),
  // Kruise's SidecarContainer fields.
  optional('podInjectPolicy', STRING),
  plain('upgradeStrategy', struct(optional('upgradeType', STRING), optional('hotUpgradeEmptyImage', STRING))),
  plain('shareVolumePolicy', struct(optional('type', STRING))),
  optional(
    'transferEnv',
    slice(
      struct(
        optional('sourceContainerName', STRING),
        pointer('sourceContainerNameFrom', struct(pointer('fieldRef', OBJECT_FIELD_SELECTOR))),
        optional('envName', STRING),
        optional('envNames', slice(STRING)),
      ),
    ),
  ),
);

function isMissing(value: unknown): boolean {
  return value === undefined || value === null;
}

// Go's isEmptyValue: false, 0, "", and empty slices and maps. A struct, such as a Quantity, is
// never empty, so even a missing one is written as its zero value.
function isEmpty(value: unknown, type: GoType): boolean {
  if (type.kind === 'struct' || type.kind === 'quantity') {
    return false;
  }
  if (isMissing(value)) {
    return true;
  }
  switch (type.kind) {
    case 'slice':
      return Array.isArray(value) && value.length === 0;
    case 'map':
      return typeof value === 'object' && Object.keys(value as object).length === 0;
    default:
      return value === '' || value === 0 || value === false;
  }
}

/** Orders map keys as Go's encoding/json sorts them, for ASCII keys such as resource names. */
export function compareKeys(a: string, b: string): number {
  if (a < b) {
    return -1;
  }
  return a > b ? 1 : 0;
}

/** Quotes a string as Go's encoding/json does with HTML escaping on, its default. */
export function goString(text: string): string {
  return JSON.stringify(text).replace(/[<>&\u2028\u2029]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function encodeZero(type: GoType): string {
  switch (type.kind) {
    case 'string':
      return '""';
    case 'int':
    case 'intOrString':
      return '0';
    case 'bool':
      return 'false';
    case 'quantity':
      return '"0"';
    case 'struct':
      return encodeValue({}, type);
    case 'slice':
    case 'map':
      return 'null';
  }
}

function encodeValue(value: unknown, type: GoType): string {
  switch (type.kind) {
    case 'string':
      return goString(String(value));
    case 'int':
      return String(Number(value));
    case 'bool':
      return value === true ? 'true' : 'false';
    case 'intOrString':
    case 'quantity':
      return typeof value === 'number' && type.kind === 'intOrString' ? String(value) : goString(String(value));
    case 'slice':
      return `[${(value as unknown[]).map((element) => (isMissing(element) ? encodeZero(type.element) : encodeValue(element, type.element))).join(',')}]`;
    case 'map': {
      const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => compareKeys(a, b));
      return `{${entries.map(([key, entry]) => `${goString(key)}:${encodeValue(entry, type.value)}`).join(',')}}`;
    }
    case 'struct': {
      const record = (value ?? {}) as Record<string, unknown>;
      const parts: string[] = [];
      for (const field of type.fields) {
        const fieldValue = record[field.name];
        if (field.pointer) {
          if (!isMissing(fieldValue)) {
            parts.push(`${goString(field.name)}:${encodeValue(fieldValue, field.type)}`);
          }
          continue;
        }
        if (field.omitEmpty && isEmpty(fieldValue, field.type)) {
          continue;
        }
        const encoded = isMissing(fieldValue) ? encodeZero(field.type) : encodeValue(fieldValue, field.type);
        parts.push(`${goString(field.name)}:${encoded}`);
      }
      return `{${parts.join(',')}}`;
    }
  }
}

/** Encodes a list of SidecarContainers as Go marshals `[]appsv1alpha1.SidecarContainer`. */
export function encodeSidecarContainers(containers: readonly unknown[]): string {
  return encodeValue(containers, slice(SIDECAR_CONTAINER));
}
