/* Shared by hpkv-smoke-server.c and hpkv-smoke-client.c. */
#ifndef HPKV_SMOKE_H
#define HPKV_SMOKE_H

#include <stdint.h>

/* An unrestricted (not _IOC-encoded) command number: the server asks for the argument by retry. */
#define HPKV_SMOKE_IOC 0x48500001u

struct hpkv_smoke_ioc {
	uint32_t in;
	uint32_t out;
	char msg[32];
};

#endif
