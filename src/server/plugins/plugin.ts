import type { FastifyPluginAsync } from 'fastify';

/**
 * Marks a plugin as not encapsulated, so its hooks and decorations apply to the
 * whole server. This is all that the fastify-plugin package does at runtime.
 */
export function global<T extends FastifyPluginAsync<any>>(name: string, plugin: T): T {
  Object.defineProperty(plugin, 'name', { value: name });
  (plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
  (plugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = name;
  return plugin;
}
