// Child process for the SIGTERM drain test: serves DEQ_MODELS_DIR from dist with
// signal handling on, and prints "READY <url>" once every model has warmed up.
import { loadConfig, startServer } from '../../dist/server/index.js';

const config = loadConfig(process.argv.slice(2), process.env);
const server = await startServer(config, { handleSignals: true });
process.stdout.write(`READY ${server.url}\n`);
