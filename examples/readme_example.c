#include <fcntl.h>
#include <unistd.h>
#include <string.h>
#include <stdio.h>
#include <sys/ioctl.h>

#define HPKV_IOCTL_GET 0

int main() {
    int fd = open("/dev/hpkv", O_RDWR);
    if (fd < 0) {
        perror("Failed to open device");
        return 1;
    }

    // Write a key-value pair
    char *data = "mykey:myvalue";
    write(fd, data, strlen(data));

    // Read a value by key
    char buffer[1024];
    strcpy(buffer, "mykey");
    if (ioctl(fd, HPKV_IOCTL_GET, buffer) == 0) {
        printf("Value: %s\n", buffer);
    }

    close(fd);
    return 0;
}
