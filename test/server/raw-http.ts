import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from connect to the end of the response. */
  ms: number;
}

/**
 * Sends bytes as they are (no client-side fixing of headers or lengths) to a
 * loopback port and reads the response until the server closes or `timeoutMs`.
 * `hold` keeps the socket open after writing (a body that never finishes).
 */
export function rawHttp(port: number, request: string | Buffer, opts: { timeoutMs?: number } = {}): Promise<RawResponse | null> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1', () => socket.write(typeof request === 'string' ? Buffer.from(request, 'latin1') : request));
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const text = finalResponse(Buffer.concat(chunks).toString('latin1'));
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return resolve(null);
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      let body = text.slice(end + 4);
      if (headers['transfer-encoding'] === 'chunked') body = dechunk(body);
      // Bytes past Content-Length belong to a next response (a pipelined or unframed request).
      else if (/^\d+$/.test(headers['content-length'] ?? '')) body = body.slice(0, Number(headers['content-length']));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body, ms: performance.now() - t0 });
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 5000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      // A complete response with a length: no need to wait for the close.
      const text = finalResponse(Buffer.concat(chunks).toString('latin1'));
      const end = text.indexOf('\r\n\r\n');
      const m = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
      if (end !== -1 && m && Buffer.byteLength(text.slice(end + 4), 'latin1') >= Number(m[1])) finish();
    });
    socket.on('close', finish);
    socket.on('error', finish);
  });
}

/** The response after any interim 1xx ones (100 Continue answers an Expect header first). */
function finalResponse(text: string): string {
  while (/^HTTP\/1\.[01] 1\d\d /.test(text)) {
    const end = text.indexOf('\r\n\r\n');
    if (end === -1) break;
    text = text.slice(end + 4);
  }
  return text;
}

function dechunk(s: string): string {
  let out = '';
  for (let i = 0; i < s.length;) {
    const nl = s.indexOf('\r\n', i);
    if (nl === -1) break;
    const n = parseInt(s.slice(i, nl), 16);
    if (!(n > 0)) break;
    out += s.slice(nl + 2, nl + 2 + n);
    i = nl + 2 + n + 2;
  }
  return out;
}

/** A multipart/form-data body from raw parts, exactly as given (no repair). */
export function multipartBody(boundary: string, parts: { name: string; filename?: string; type?: string; body: Buffer | string }[], close = true): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += '\r\n';
    if (p.type) head += `Content-Type: ${p.type}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`, 'latin1'), Buffer.isBuffer(p.body) ? p.body : Buffer.from(p.body, 'latin1'), Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

/** An HTTP/1.1 POST with an exact body, Content-Length and Connection: close. */
export function rawPost(path: string, contentType: string | null, body: Buffer, extraHeaders = ''): Buffer {
  const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${contentType !== null ? `Content-Type: ${contentType}\r\n` : ''}Content-Length: ${body.length}\r\nConnection: close\r\n${extraHeaders}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
