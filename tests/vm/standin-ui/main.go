// A stand-in for nextjs-ollama-llm-ui in the local VM tests, NOT the real UI: the real one's
// build needs fonts.googleapis.com, which these machines cannot reach. It answers the requests
// the image tests make of the UI: "/" (a page), and "/api/tags" and "/api/chat" proxied to the
// Ollama address in $OLLAMA_URL, as the real UI's server side does. Listens on $PORT (3000).
package main

import (
	"io"
	"log"
	"net/http"
	"os"
	"strings"
)

func main() {
	ollama := strings.TrimRight(os.Getenv("OLLAMA_URL"), "/")
	if ollama == "" {
		log.Fatal("OLLAMA_URL is not set")
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "3000"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>bakery stand-in UI</title><p>stand-in for nextjs-ollama-llm-ui</p>\n")
	})
	proxy := func(method, path string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != method {
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			req, err := http.NewRequestWithContext(r.Context(), method, ollama+path, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, "ollama: "+err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			buf := make([]byte, 4096)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					w.Write(buf[:n])
					if f, ok := w.(http.Flusher); ok {
						f.Flush()
					}
				}
				if err != nil {
					return
				}
			}
		}
	}
	http.HandleFunc("/api/tags", proxy(http.MethodGet, "/api/tags"))
	http.HandleFunc("/api/chat", proxy(http.MethodPost, "/api/chat"))
	log.Printf("stand-in UI on :%s, Ollama at %s", port, ollama)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
