"""A repository web server for the HTTP(S) content tests, on 127.0.0.1 only.

Usage: http_repo_server.py ROOT CERT KEY
Serves ROOT over HTTP and HTTPS (CERT/KEY) on two free ports, printed as "PORTS http https" on
stdout. Paths under /slow/ answer after 30 s; paths under /truncate/ send the headers of the
whole file and then only half of its bytes. Exits when its parent process does.
"""

import http.server
import os
import ssl
import sys
import threading
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(30)
            self.send_error(503)
            return
        if self.path.startswith("/truncate/"):
            path = self.translate_path(self.path)
            try:
                with open(path, "rb") as f:
                    body = f.read()
            except OSError:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def main():
    root, cert, key = sys.argv[1:4]
    os.chdir(root)
    plain = Server(("127.0.0.1", 0), Handler)
    tls = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    for server in (plain, tls):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORTS {plain.server_address[1]} {tls.server_address[1]}", flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
