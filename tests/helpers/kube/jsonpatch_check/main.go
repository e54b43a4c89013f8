// jsonpatch-check applies RFC 6902 JSON patches the way kube-apiserver does.
//
// kube-apiserver encodes the stored object with Go's encoding/json (which escapes <, > and & as
// \u003c, \u003e, \u0026 and writes other non-ASCII characters as raw UTF-8), then applies the
// request's patch bytes, exactly as the client sent them, with evanphx/json-patch (v4 API). Its
// "test" operation compares the raw JSON bytes of a string, so the client's spelling of a value
// matters. This program does the same for the Kubernetes emulator of the mlserve tests.
//
// Protocol: one request per line on stdin, one answer per line on stdout.
//
//	request: {"doc": <the stored object as JSON>, "patch": "<base64 of the request body>"}
//	answer:  {"ok": true, "doc": <the patched object>}
//	         {"ok": false, "stage": "decode" | "apply", "error": "<the library's message>"}
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"

	jsonpatch "github.com/evanphx/json-patch"
)

type request struct {
	Doc   json.RawMessage `json:"doc"`
	Patch string          `json:"patch"`
}

type answer struct {
	OK    bool            `json:"ok"`
	Doc   json.RawMessage `json:"doc,omitempty"`
	Stage string          `json:"stage,omitempty"`
	Error string          `json:"error,omitempty"`
}

// goEncoded re-encodes a JSON document the way encoding/json marshals a decoded object.
func goEncoded(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep integers exact, as a typed object's int64 fields would be
	var value interface{}
	if err := dec.Decode(&value); err != nil {
		return nil, err
	}
	return json.Marshal(value)
}

func handle(line []byte) answer {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return answer{Stage: "protocol", Error: err.Error()}
	}
	stored, err := goEncoded(req.Doc)
	if err != nil {
		return answer{Stage: "protocol", Error: err.Error()}
	}
	body, err := base64.StdEncoding.DecodeString(req.Patch)
	if err != nil {
		return answer{Stage: "protocol", Error: err.Error()}
	}
	patch, err := jsonpatch.DecodePatch(body)
	if err != nil {
		return answer{Stage: "decode", Error: err.Error()}
	}
	patched, err := patch.Apply(stored)
	if err != nil {
		return answer{Stage: "apply", Error: err.Error()}
	}
	return answer{OK: true, Doc: patched}
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if encErr := enc.Encode(handle(line)); encErr != nil {
				os.Exit(2)
			}
			if flushErr := out.Flush(); flushErr != nil {
				os.Exit(2)
			}
		}
		if err != nil {
			return
		}
	}
}
