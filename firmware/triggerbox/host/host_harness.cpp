// Runs triggerbox.ino on the host. Each argument is a chunk of bytes for the serial input (C
// escapes \n, \r, \xHH allowed), or "@tick N" to fire N Timer1 compare matches, or "@timer" to
// print the timer setting as "TIMER <prescaler> <compare value>". Everything the firmware writes
// goes to standard output. Build: c++ -std=c++17 -I firmware/triggerbox/host host_harness.cpp
#include <stdio.h>
#include <stdlib.h>

#include <string>

#include "Arduino.h"

uint8_t TCCR1A, TCCR1B, TCCR1C, TIMSK1, TIFR1;
uint16_t TCNT1, OCR1A;
HostSerial Serial;

static std::string serialInput;
static size_t serialReadOffset = 0;

void pinMode(uint8_t, uint8_t) {}
void digitalWrite(uint8_t, uint8_t) {}
void HostSerial::begin(uint32_t) {}
int HostSerial::available() { return (int)(serialInput.size() - serialReadOffset); }
int HostSerial::read() {
  if (serialReadOffset >= serialInput.size()) return -1;
  return (uint8_t)serialInput[serialReadOffset++];
}
size_t HostSerial::write(uint8_t value) { return fwrite(&value, 1, 1, stdout); }
void HostSerial::print(const __FlashStringHelper *text) {
  fputs(reinterpret_cast<const char *>(text), stdout);
}
void HostSerial::print(const char *text) { fputs(text, stdout); }
void HostSerial::print(uint32_t value) { printf("%lu", (unsigned long)value); }

#include "../triggerbox.ino"

static std::string unescape(const char *text) {
  std::string bytes;
  for (; *text; text++) {
    if (*text != '\\') {
      bytes += *text;
      continue;
    }
    text++;
    if (*text == 'n') {
      bytes += '\n';
    } else if (*text == 'r') {
      bytes += '\r';
    } else if (*text == 'x') {
      char hex[3] = {text[1], text[2], '\0'};
      bytes += (char)strtol(hex, NULL, 16);
      text += 2;
    } else {
      bytes += *text;
    }
  }
  return bytes;
}

int main(int argc, char **argv) {
  setup();
  for (int i = 1; i < argc; i++) {
    std::string argument = argv[i];
    if (argument.rfind("@tick ", 0) == 0) {
      long ticks = strtol(argument.c_str() + 6, NULL, 10);
      // Only a running timer (clock selected, interrupt enabled) makes compare matches.
      for (long k = 0; k < ticks && (TCCR1B & 0x07) && (TIMSK1 & _BV(OCIE1A)); k++) {
        TIMER1_COMPA_vect();
      }
    } else if (argument == "@timer") {
      printf("TIMER %u %u\n", TIMER_PRESCALERS[clockSelect - 1], (unsigned)compareValue);
    } else {
      serialInput += unescape(argument.c_str());
      loop();
    }
  }
  return 0;
}
