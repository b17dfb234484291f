// The Python exporter validates manifests against exporter/deq_serve_export/manifest.schema.json
// before it writes a bundle (issue #21): that file must be the schema the server loads bundles with.
// Regenerate it with: node --input-type=module -e "import {MANIFEST_SCHEMA} from './dist/runtime/manifest-schema.js';
//   import fs from 'fs'; fs.writeFileSync('exporter/deq_serve_export/manifest.schema.json', JSON.stringify(MANIFEST_SCHEMA, null, 1) + '\n')"
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MANIFEST_SCHEMA } from '../../src/runtime/manifest-schema.js';

describe('exporter manifest schema', () => {
  it('exporter/deq_serve_export/manifest.schema.json equals the server\'s MANIFEST_SCHEMA', () => {
    const file = join(__dirname, '..', '..', 'exporter', 'deq_serve_export', 'manifest.schema.json');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(JSON.parse(JSON.stringify(MANIFEST_SCHEMA)));
  });
});
