// A plain SMTP server on 127.0.0.1 for the browser tests: it accepts every message and
// appends each, as one JSON line ({from, to, data}), to the file named by its first argument.
// It prints the port it listens on, so run.sh can point kith's smtp_url at it.
import net from "node:net";
import fs from "node:fs";

const file = process.argv[2];
const server = net.createServer((socket) => {
  let buffer = "";
  let mail = { from: "", to: [], data: "" };
  let inData = false;
  socket.setEncoding("utf8");
  socket.write("220 sink ESMTP\r\n");
  socket.on("data", (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf("\r\n")) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (inData) {
        if (line === ".") {
          inData = false;
          fs.appendFileSync(file, JSON.stringify(mail) + "\n");
          mail = { from: "", to: [], data: "" };
          socket.write("250 queued\r\n");
        } else {
          mail.data += line + "\n";
        }
        continue;
      }
      const upper = line.toUpperCase();
      if (upper.startsWith("EHLO") || upper.startsWith("HELO")) socket.write("250-sink\r\n250 8BITMIME\r\n");
      else if (upper.startsWith("MAIL FROM:")) { mail.from = line.slice(10).trim(); socket.write("250 OK\r\n"); }
      else if (upper.startsWith("RCPT TO:")) { mail.to.push(line.slice(8).trim()); socket.write("250 OK\r\n"); }
      else if (upper === "DATA") { inData = true; socket.write("354 go on\r\n"); }
      else if (upper === "QUIT") { socket.end("221 bye\r\n"); }
      else socket.write("250 OK\r\n");
    }
  });
  socket.on("error", () => {});
});
server.listen(0, "127.0.0.1", () => {
  console.log(`smtp sink listening on ${server.address().port}`);
});
