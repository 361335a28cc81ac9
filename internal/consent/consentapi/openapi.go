package consentapi

import _ "embed"

// openAPI is the OpenAPI 3 document served at /consent/openapi.json; a test
// checks that it names every route the API mounts.
//
//go:embed openapi.json
var openAPI []byte
