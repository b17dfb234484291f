// The ONNX sessions a DeqModel holds: its bundle's graphs, checked against the manifest, and
// for solverPlacement 'device' the device-output sessions and solver graphs; opened all or
// none, and released together.
import { DeqError } from '../errors.js';
import type { Bundle, GraphRole } from './bundle.js';
import type { DeviceSolverGraphs } from './device-solve.js';
import type { SolverPlacement } from './infer-types.js';
import type { Manifest } from './manifest.js';
import { OnnxGraph, type SessionConfig } from './onnx.js';

/** The open graphs: the cell always, inject and head when the bundle has them. */
export type Graphs = Partial<Record<GraphRole, OnnxGraph>> & { cell: OnnxGraph };

/** Sessions of a device-placed model: inject and cell with their outputs on the device, solver graphs per state shape. */
export interface DeviceParts {
  config: SessionConfig;
  inject?: OnnxGraph;
  cell: OnnxGraph;
  solvers: Map<string, Promise<DeviceSolverGraphs>>;
}

/** Opens a bundle's graphs (and the device sessions when placed there). Nothing stays open on failure. */
export async function openModelGraphs(bundle: Bundle, config: SessionConfig, placement: SolverPlacement | undefined): Promise<{ graphs: Graphs; device: DeviceParts | null }> {
  const opened: OnnxGraph[] = [];
  try {
    const graphs = {} as Graphs;
    for (const role of ['inject', 'cell', 'head'] as const) {
      const bytes = bundle.graphs[role], spec = bundle.manifest.graphs[role];
      if (!bytes || !spec) continue;
      const g = await OnnxGraph.load(bytes, spec.file, config);
      opened.push(g);
      checkGraph(bundle.manifest, role, g);
      graphs[role] = g;
    }
    let device: DeviceParts | null = null;
    if (placement === 'device') {
      const m = bundle.manifest;
      const open = async (role: 'inject' | 'cell') => {
        const g = await OnnxGraph.load(bundle.graphs[role]!, `${m.graphs[role]!.file} (device outputs)`, config, { deviceOutputs: m.graphs[role]!.outputs.map((o) => o.name) });
        opened.push(g);
        return g;
      };
      device = { config, inject: m.graphs.inject ? await open('inject') : undefined, cell: await open('cell'), solvers: new Map() };
    }
    return { graphs, device };
  } catch (err) {
    await Promise.allSettled(opened.map((g) => g.release()));
    throw err;
  }
}

/** Releases every session openModelGraphs opened, and the device solver graphs loaded since. */
export async function releaseModelGraphs(graphs: Graphs, device: DeviceParts | null): Promise<void> {
  const solvers = device ? await Promise.allSettled([...device.solvers.values()]) : [];
  await Promise.allSettled([
    ...Object.values(graphs).map((g) => g.release()),
    device?.inject?.release(), device?.cell.release(),
    ...solvers.map((s) => (s.status === 'fulfilled' ? s.value.release() : undefined)),
  ]);
}

// The graph must take the inputs the manifest declares, or every request would fail later.
function checkGraph(m: Manifest, role: GraphRole, g: OnnxGraph): void {
  const spec = m.graphs[role]!;
  for (const t of spec.inputs) {
    if (!g.inputNames.includes(t.name)) {
      throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${spec.file}: graph has no input "${t.name}" (manifest.graphs.${role}.inputs; graph inputs are ${g.inputNames.join(', ')})`);
    }
  }
  for (const t of spec.outputs) {
    if (!g.outputNames.includes(t.name)) {
      throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${spec.file}: graph has no output "${t.name}" (manifest.graphs.${role}.outputs)`);
    }
  }
}
